"""The service under real gunicorn (deploy/gunicorn.conf.py) on loopback: answers, logs, shuts down cleanly."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.live import START_TIMEOUT, Replica, json_lines, running, spawn_replica
from tests.live import request_id as live_request_id

pytestmark = pytest.mark.live

TIMEOUT = 5  # seconds, for every request once the server is up


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    with running(tmp_path_factory.mktemp("gunicorn"), {"WEB_CONCURRENCY": "2"}) as replica:
        yield replica


def keys_anywhere(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node).union(*(keys_anywhere(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(keys_anywhere(v) for v in node))
    return set()


@pytest.mark.parametrize(
    "findings",
    [
        pytest.param({"bladder": "retention"}, id="bladder-retention"),
        pytest.param({"slr": {"result": "weak", "side": "left"}, "pain": {"severity": 4}}, id="weak-raise"),
    ],
)
def test_triage_over_http_matches_engine(server, triage, findings):
    response = requests.post(f"{server.url}/v1/triage", json={"findings": findings}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == json.loads(json.dumps(triage(findings)))
    if findings == {"bladder": "retention"}:
        assert response.json()["triage"]["level"] == "emergency"


def test_problem_json_over_http(server):
    response = requests.post(
        f"{server.url}/v1/triage",
        data=b'{"findings": {"bladder": "retention"',
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 400


def test_no_request_content_reaches_the_log(server):
    canary = f"CANARY-{uuid.uuid4().hex}"
    url = server.url
    json_headers = {"Content-Type": "application/json"}
    tagged: list[str] = []  # request ids we set, to prove those requests were logged at all

    def send(method: str, path: str, **kwargs: Any) -> requests.Response:
        request_id = live_request_id(f"canary-test-{len(tagged)}")
        tagged.append(request_id)
        headers = {"X-Request-ID": request_id, **kwargs.pop("headers", {})}
        return requests.request(method, url + path, headers=headers, timeout=TIMEOUT, **kwargs)

    statuses = [
        send("POST", "/v1/triage", json={"findings": {canary: "present"}}).status_code,
        send("POST", "/v1/triage", json={"findings": {"bladder": canary}}).status_code,
        send("POST", "/v1/triage", json={"findings": {"pain": {"locations": [canary]}}}).status_code,
        send("POST", "/v1/triage", json={"findings": {}, "patient": {"sex": canary}}).status_code,
        send("POST", "/v1/triage", json={"findings": {}, canary: canary}).status_code,
        send("POST", f"/v1/triage?note={canary}", json={"findings": {"bladder": "retention"}}).status_code,
        send(
            "POST",
            "/v1/triage",
            json={"findings": {"saddle_numbness": "present"}},
            headers={"User-Agent": f"agent/{canary}", "X-Client-Note": canary, "Cookie": f"session={canary}"},
        ).status_code,
        send(
            "POST", "/v1/triage", data=f'{{"findings": {{"bladder": "{canary}"'.encode(), headers=json_headers
        ).status_code,
        send(
            "POST",
            "/v1/triage",
            data=f'{{"findings": {{"bladder": "retention", "bladder": "{canary}"}}}}'.encode(),
            headers=json_headers,
        ).status_code,
        send("POST", "/v1/triage", data=canary.encode(), headers={"Content-Type": "text/plain"}).status_code,
        send("GET", f"/v1/rules/{canary}").status_code,
        send("GET", f"/v1/knowledge?q={canary}").status_code,
        send("GET", f"/{canary}").status_code,
    ]
    # A query string is refused (400, issue 20): no route reads one.
    assert statuses == [422, 422, 422, 422, 422, 400, 200, 400, 400, 415, 404, 400, 404]

    # a malformed X-Request-ID carrying the canary is replaced, never logged
    replaced = requests.get(f"{url}/livez", headers={"X-Request-ID": f"bad id {canary}"}, timeout=TIMEOUT)
    assert replaced.status_code == 200
    assert canary not in replaced.headers["X-Request-ID"]

    deadline = time.monotonic() + 5  # the workers flush each line; allow for slow disks
    while True:
        text = server.log_text()
        events = json_lines(text, strict=True)
        logged_ids = {e.get("request_id") for e in events if e.get("event") == "request"}
        if set(tagged) <= logged_ids or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert set(tagged) <= logged_ids, f"requests missing from the log: {set(tagged) - logged_ids}"

    assert canary not in text, "request content leaked into the gunicorn log"
    assert canary.lower() not in text.lower()
    assert canary.removeprefix("CANARY-") not in text

    requests_logged = [e for e in events if e.get("event") == "request"]
    assert requests_logged
    for event in requests_logged:
        assert {"request_id", "route", "status"} <= event.keys(), event
    by_id = {e["request_id"]: e for e in requests_logged}
    assert by_id[live_request_id("canary-test-5")]["route"] == "/v1/triage"
    assert (
        by_id[live_request_id("canary-test-5")]["status"] == 400
    )  # the route template is logged, never the query string
    assert by_id[live_request_id("canary-test-0")]["status"] == 422

    decisions = [e for e in events if e.get("event") == "triage_decision"]
    assert decisions
    for decision in decisions:
        assert {"request_id", "rules", "knowledge_version"} <= decision.keys(), decision

    leaking = [e for e in events if "findings" in keys_anywhere(e)]
    assert not leaking, f"log lines carry findings: {leaking[:3]}"


def test_decision_log_records_the_triage_level(server):
    request_id = str(uuid.uuid4())
    response = requests.post(
        f"{server.url}/v1/triage",
        json={"findings": {"bladder": "retention"}},
        headers={"X-Request-ID": request_id},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert response.json()["triage"]["level"] == "emergency"
    deadline = time.monotonic() + 5
    while True:
        decisions = [
            e
            for e in json_lines(server.log_text(), strict=True)
            if e.get("event") == "triage_decision" and e.get("request_id") == request_id
        ]
        if decisions or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(decisions) == 1
    assert "emergency" in decisions[0].values(), decisions[0]


def test_an_unknown_log_level_stops_start_up_by_name(tmp_path):
    # Without its own check gunicorn stops with "Unable to configure logger 'gunicorn.error'".
    replica = spawn_replica(tmp_path, "bad-level", {"LOG_LEVEL": "verbose"})
    try:
        assert replica.process.wait(timeout=START_TIMEOUT) != 0
    finally:
        replica.ensure_stopped()
    assert "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'VERBOSE'" in replica.log_text()


def test_a_tampered_source_text_stops_start_up_with_its_reason_and_no_traceback(tmp_path, seeds_dir):
    texts = tmp_path / "texts"
    shutil.copytree(seeds_dir, texts)
    tampered = sorted(texts.glob("000_*.txt"))[0]
    tampered.write_text(tampered.read_text(encoding="utf-8") + "\nan added line\n", encoding="utf-8")
    replica = spawn_replica(tmp_path, "tampered", {"TRIAGE_SOURCE_TEXTS_DIR": str(texts)})
    try:
        assert replica.process.wait(timeout=START_TIMEOUT) != 0
    finally:
        replica.ensure_stopped()
    log = replica.log_text()
    assert f"source 000: {tampered.name} differs from the text the knowledge base cites" in log
    assert "Traceback" not in log, log
