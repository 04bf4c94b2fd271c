"""Triage service for patients who cannot lift a straight leg (see README.md).

`create_app` is imported lazily so that `service.engine` and `service.knowledge` stay usable
without Flask (CLI, batch jobs, benchmarks).
"""

from typing import Any


def create_app(config: dict[str, Any] | None = None) -> Any:
    from service.app import create_app as factory

    return factory(config)
