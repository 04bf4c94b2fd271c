"""A request's log lines go out in one write when it ends; lines outside a request go out at once.

Each write releases the GIL, which under load costs a hand-over between threads (service/logs.py),
so a decision must not cost a write of its own. Nothing may be lost or reordered either: the audit
event, the request line and any error line of one request are written together, in order, before
the response leaves, and an error still writes them.
"""

import contextvars
import logging
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from service import logs
from tests.live import request_id
from tests.scenarios import exam

VALID = {"findings": exam({"slr.result": "weak"})}


@pytest.fixture
def writes(monkeypatch):
    """Every chunk service.logs writes to stdout, as the lines in it."""
    chunks: list[list[dict[str, Any]]] = []
    monkeypatch.setattr(logs, "_write", lambda data: chunks.append([orjson.loads(x) for x in data.splitlines()]))
    return chunks


def test_a_decision_and_its_request_line_are_one_write(client, writes):
    response = client.post("/v1/triage", json=VALID)
    assert response.status_code == 200
    assert [[line["event"] for line in chunk] for chunk in writes] == [["triage_decision", "request"]]
    decision, request = writes[0]
    assert decision["request_id"] == request["request_id"] == response.headers["X-Request-ID"]
    assert decision["triage_level"] == response.get_json()["triage"]["level"]


def test_every_request_writes_its_own_lines(client, writes):
    for _ in range(3):
        assert client.post("/v1/triage", json=VALID).status_code == 200
    assert client.get("/readyz").status_code == 200
    assert [[line["event"] for line in chunk] for chunk in writes] == [
        ["triage_decision", "request"],
        ["triage_decision", "request"],
        ["triage_decision", "request"],
        ["request"],
    ]
    assert len({chunk[0]["request_id"] for chunk in writes}) == 4


def test_an_internal_error_still_writes_its_lines(app, client, writes, monkeypatch):
    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)  # as under gunicorn
    monkeypatch.setattr("service.routes.triage.evaluate", boom)
    assert client.post("/v1/triage", json=VALID).status_code == 500
    assert [[line["event"] for line in chunk] for chunk in writes] == [["unhandled_error", "request"]]
    assert writes[0][1]["status"] == 500


def test_a_line_outside_a_request_is_written_at_once(writes):
    logs.log.info("outside_a_request", count=1)
    assert writes == [[{**writes[0][0], "event": "outside_a_request", "count": 1}]]


def test_a_line_is_stamped_with_its_request_level_and_utc_time(client, writes, monkeypatch):
    # The stamping step stands in for structlog's merge_contextvars, add_log_level and TimeStamper.
    monkeypatch.setattr(logs.time, "time", lambda: 1764657925.25)  # 2025-12-02T06:45:25.25 UTC
    response = client.post("/v1/triage", json=VALID, headers={"X-Request-ID": request_id("stamp-1")})
    decision, request = writes[0]
    for line in (decision, request):
        assert line["request_id"] == request_id("stamp-1") == response.headers["X-Request-ID"]
        assert line["level"] == "info"
        assert line["timestamp"] == "2025-12-02T06:45:25.250000Z"


def test_the_timestamp_is_isoformat_to_the_microsecond_across_seconds(monkeypatch):
    for now in (1764657925.0, 1764657925.999999, 1764657926.5, 1764657925.5):  # back in time too
        monkeypatch.setattr(logs.time, "time", lambda now=now: now)
        expected = datetime.fromtimestamp(now, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        assert logs.utc_timestamp() == expected


def test_a_warning_outside_a_request_has_no_request_context(writes):
    logs._request_context.set(None)
    logs.log.warn("outside", count=1)
    [[line]] = writes
    assert line["level"] == "warning" and "request_id" not in line


def test_an_info_event_writes_the_line_structlog_would(app, writes, monkeypatch):
    # The audit event skips structlog's dispatch (logs.info_event): its line must not differ.
    monkeypatch.setattr(logs.time, "time", lambda: 1764657925.25)
    fields = {"channel": "api", "provisional": False, "rules": ["R1", "R2"], "count": 3}

    def both() -> None:
        logs.bind_request_context(request_id="same-1", caller="client-a")
        logs.log.info("same_event", **fields)
        logs.info_event("same_event", dict(fields))

    contextvars.copy_context().run(both)  # the bound context stays in the copy
    [[by_structlog], [direct]] = writes
    assert list(direct.items()) == list(by_structlog.items())
    assert by_structlog["request_id"] == "same-1" and by_structlog["rules"] == ["R1", "R2"]


def test_an_info_event_is_dropped_below_the_configured_level(app, writes, monkeypatch):
    monkeypatch.setattr(logs, "_level", logging.WARNING)
    logs.info_event("dropped", {"count": 1})
    assert writes == []


def test_an_unknown_log_level_is_refused_by_name():
    with pytest.raises(ValueError, match="LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"):
        logs.configure_logging("verbose")
