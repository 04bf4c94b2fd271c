"""What a test logged: the service's own structlog events (before rendering) and stdlib records.

The service's events go from structlog straight to stdout (service/logs/), not through stdlib
logging, so caplog alone would miss them; the `logs` fixture (tests/conftest.py) collects both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class Logged:
    caplog: pytest.LogCaptureFixture
    captured: list[dict[str, Any]] = field(default_factory=list)


def events(logged: Logged, name: str) -> list[dict[str, Any]]:
    """The service's events of that name."""
    return [e for e in logged.captured if e.get("event") == name]


def all_logged(logged: Logged) -> str:
    """Everything logged, as text: for checks that a value never reaches the logs."""
    rendered = [json.dumps(e, default=str) for e in logged.captured]
    records = [r.getMessage() for r in logged.caplog.records]
    return "\n".join([logged.caplog.text, *rendered, *records])
