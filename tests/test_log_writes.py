"""A request's log lines go out in one write when it ends; lines outside a request go out at once.

Each write releases the GIL, which under load costs a hand-over between threads (service/logs/buffer.py),
so a decision must not cost a write of its own. Nothing may be lost or reordered either: the audit
event, the request line and any error line of one request are written together, in order, before
the response leaves, and an error still writes them.
"""

import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from service import create_app
from service.logs import buffer
from service.logs.setup import configure_logging, log
from tests.live import request_id
from tests.scenarios import exam

VALID = {"findings": exam({"slr.result": "weak"})}
README = Path(__file__).resolve().parents[1] / "docs" / "deployment.md"  # the guide that documents the audit line
DECISION_FIELDS_INTRO = "Each decision writes one `triage_decision` log event"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
def writes(monkeypatch):
    """Every chunk the service's logging writes to stdout, as the lines in it."""
    chunks: list[list[dict[str, Any]]] = []
    monkeypatch.setattr(buffer, "write", lambda data: chunks.append([orjson.loads(x) for x in data.splitlines()]))
    return chunks


def test_a_decision_and_its_request_line_are_one_write(client, writes):
    response = client.post("/v1/triage", json=VALID)
    assert response.status_code == 200
    assert [[line["event"] for line in chunk] for chunk in writes] == [["triage_decision", "request"]]
    decision, request = writes[0]
    assert decision["request_id"] == request["request_id"] == response.headers["X-Request-ID"]
    assert decision["triage_level"] == response.get_json()["triage"]["level"]
    assert {k: request[k] for k in ("method", "route", "status")} == {
        "method": "POST",
        "route": "/v1/triage",
        "status": 200,
    }
    assert request["duration_ms"] >= 0 and isinstance(request["pid"], int)


def readme_decision_fields() -> set[str]:
    """The field names in the first column of the README's table of the decision line."""
    text = README.read_text(encoding="utf-8")
    assert DECISION_FIELDS_INTRO in text, "the README no longer describes the decision line"
    rows = []
    for line in text.split(DECISION_FIELDS_INTRO, 1)[1].splitlines()[1:]:
        if line.startswith("|"):
            rows.append(line)
        elif rows:  # the first line after the table
            break
    names = {name for row in rows[2:] for name in re.findall(r"`([a-z_0-9]+)`", row.split("|")[1])}
    assert names, "no table of the decision line's fields after its introduction in the README"
    return names


def test_the_readme_names_every_field_of_the_decision_line(client, writes):
    # Operators build their audit queries from the README: it must name the fields the line really has.
    assert client.post("/v1/triage", json=VALID).status_code == 200
    decision = writes[0][0]
    assert decision["event"] == "triage_decision"
    assert readme_decision_fields() == set(decision)


def test_the_request_line_names_the_route_template_never_the_path(client, writes):
    assert client.get("/v1/rules/NO-SUCH-RULE").status_code == 404
    assert client.get("/no/such/path").status_code == 404
    lines = [chunk[-1] for chunk in writes]
    assert [(line["route"], line["status"]) for line in lines] == [("/v1/rules/<rule_id>", 404), (None, 404)]


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
    log.info("outside_a_request", count=1)
    assert writes == [[{**writes[0][0], "event": "outside_a_request", "count": 1}]]


def test_a_line_is_stamped_with_its_request_level_and_utc_time(client, writes):
    before = time.time()
    response = client.post("/v1/triage", json=VALID, headers={"X-Request-ID": request_id("stamp-1")})
    decision, request = writes[0]
    for line in (decision, request):
        assert line["request_id"] == request_id("stamp-1") == response.headers["X-Request-ID"]
        assert line["level"] == "info"
        assert ISO_UTC.match(line["timestamp"]), line["timestamp"]
        assert line["timestamp"][:16] in {
            time.strftime("%Y-%m-%dT%H:%M", time.gmtime(t)) for t in (before, time.time())
        }


def test_a_warning_outside_a_request_has_no_request_context(client, writes):
    client.get("/readyz")  # a request binds its id; the next line outside one must not carry it
    writes.clear()
    log.warn("outside", count=1)
    [[line]] = writes
    assert line["level"] == "warning" and "request_id" not in line


def test_each_app_applies_its_own_log_level(writes):
    quiet = create_app({"TESTING": True, "API_OPEN": True, "LOG_LEVEL": "WARNING"}).test_client()
    try:
        writes.clear()  # its start-up warning (open mode) was written
        assert quiet.post("/v1/triage", json=VALID).status_code == 200
        assert writes == []  # the decision and request lines are info
        loud = create_app({"TESTING": True, "API_OPEN": True, "LOG_LEVEL": "INFO"}).test_client()
        assert loud.post("/v1/triage", json=VALID).status_code == 200
        assert [[line["event"] for line in chunk] for chunk in writes][-1] == ["triage_decision", "request"]
    finally:
        configure_logging("INFO")


def test_an_unknown_log_level_is_refused_by_name():
    with pytest.raises(ValueError, match="LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"):
        configure_logging("verbose")
