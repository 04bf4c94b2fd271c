import logging
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from service import create_app
from service.engine import evaluate
from service.knowledge import load_knowledge

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def kb():
    return load_knowledge()


@pytest.fixture(scope="session")
def app():
    return create_app({"TESTING": True, "API_OPEN": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def seeds_dir() -> Path:
    """The source texts: SEEDS_DIR (set by `make test`) or ../shared/seeds. CI always has them."""
    folder = Path(os.environ.get("SEEDS_DIR") or ROOT.parent / "shared" / "seeds")
    if not folder.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"source texts not found at {folder}; CI must have them")
        pytest.skip(f"source texts not at hand ({folder}); set SEEDS_DIR to check citations")
    return folder


@pytest.fixture(scope="session")
def triage(kb):
    """Evaluate findings with the bundled knowledge base (engine only, no HTTP)."""

    def run(findings: dict[str, Any], patient: dict[str, Any] | None = None) -> dict[str, Any]:
        request: dict[str, Any] = {"findings": findings}
        if patient:
            request["patient"] = patient
        return evaluate(kb, request)

    return run


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """The service's events (as written) and stdlib records logged during the test (tests/logcapture.py)."""
    from service.logs.buffer import JsonLineLogger
    from tests.logcapture import Logged

    caplog.set_level(logging.INFO)
    logged = Logged(caplog)
    written = JsonLineLogger.msg

    def recording(self: JsonLineLogger, message: bytes) -> None:
        logged.captured.append(orjson.loads(message))
        written(self, message)

    for name in ("msg", "debug", "info", "warning", "warn", "error", "critical", "exception", "fatal", "log"):
        monkeypatch.setattr(JsonLineLogger, name, recording)
    return logged
