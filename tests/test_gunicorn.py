"""The service under real gunicorn (deploy/gunicorn.conf.py) on loopback: answers, logs, shuts down cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
TIMEOUT = 5  # seconds, for every request once the server is up


@dataclass
class Server:
    url: str
    log_path: Path
    process: subprocess.Popen

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.1
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            last_error = f"gunicorn exited with code {server.process.returncode}"
            break
        try:
            response = requests.get(f"{server.url}/readyz", timeout=2)
            if response.status_code == 200:
                return
            last_error = f"/readyz answered {response.status_code}"
        except requests.RequestException as exc:
            last_error = type(exc).__name__
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    pytest.fail(f"gunicorn not ready within {START_TIMEOUT:.0f} s ({last_error}); log:\n{server.log_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Any:
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    port = _free_port()
    env = {**os.environ, "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2", "TRIAGE_API_OPEN": "true"}
    command = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "service:create_app()"]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    running = Server(url=f"http://127.0.0.1:{port}", log_path=log_path, process=process)
    try:
        _wait_ready(running)
    except BaseException:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)
        raise

    yield running

    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)
        pytest.fail(f"gunicorn did not stop within {STOP_TIMEOUT:.0f} s of SIGTERM; log:\n{running.log_text()}")
    assert code == 0, f"gunicorn exited with {code} after SIGTERM; log:\n{running.log_text()}"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line that looks like JSON must be a JSON object."""
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except json.JSONDecodeError as exc:
                pytest.fail(f"log line {number} is not valid JSON ({exc}): {line[:200]}")
            assert isinstance(event, dict), line[:200]
            events.append(event)
    return events


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
        request_id = f"canary-test-{len(tagged)}"
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
    assert statuses == [422, 422, 422, 422, 422, 200, 200, 400, 400, 415, 404, 200, 404]

    # a malformed X-Request-ID carrying the canary is replaced, never logged
    replaced = requests.get(f"{url}/livez", headers={"X-Request-ID": f"bad id {canary}"}, timeout=TIMEOUT)
    assert replaced.status_code == 200
    assert canary not in replaced.headers["X-Request-ID"]

    deadline = time.monotonic() + 5  # the workers flush each line; allow for slow disks
    while True:
        text = server.log_text()
        events = json_lines(text)
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
    assert by_id["canary-test-5"]["route"] == "/v1/triage"
    assert by_id["canary-test-5"]["status"] == 200
    assert by_id["canary-test-0"]["status"] == 422

    decisions = [e for e in events if e.get("event") == "triage_decision"]
    assert decisions
    for decision in decisions:
        assert {"request_id", "rules", "knowledge_version"} <= decision.keys(), decision

    leaking = [e for e in events if "findings" in keys_anywhere(e)]
    assert not leaking, f"log lines carry findings: {leaking[:3]}"


def test_decision_log_records_the_triage_level(server):
    request_id = f"decision-{uuid.uuid4().hex[:8]}"
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
            for e in json_lines(server.log_text())
            if e.get("event") == "triage_decision" and e.get("request_id") == request_id
        ]
        if decisions or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(decisions) == 1
    assert "emergency" in decisions[0].values(), decisions[0]
