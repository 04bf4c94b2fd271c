"""The production gunicorn config at run time: refusing to serve strangers, metrics summed across
workers, and a bounded soak at steady concurrency (memory flat, no errors). Loopback only."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from service.auth.policy import key_hash
from tests.clinical_cases import CASES
from tests.live import GUNICORN_COMMAND, LOOPBACK, ROOT, free_port, json_lines, running
from tests.scenarios import exam

pytestmark = pytest.mark.live

SOAK_SECONDS = 45
SOAK_THREADS = 4
RSS_GROWTH_LIMIT_KIB = 24 * 1024  # per worker, after warm-up
TIMEOUT = 5  # seconds, for every request once the server is up


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _samples(text: str, name: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_binding_beyond_loopback_without_credentials_refuses_to_start():
    env = {**os.environ, "BIND": f"0.0.0.0:{free_port()}", "TRIAGE_API_OPEN": "true"}
    env.pop("TRIAGE_API_KEYS_FILE", None)
    env.pop("TRIAGE_API_JWT_TRUST_FILE", None)
    done = subprocess.run(GUNICORN_COMMAND, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "refusing to start" in done.stderr


def test_api_keys_under_gunicorn(tmp_path):
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"keys:\n  - id: ops-1\n    sha256: {key_hash('s3cret-key-1')}\n    scopes: [triage]\n")
    # live.py opens /v1 on loopback unless told otherwise; here the keys file alone decides
    # "False" spelled as an operator might: before issue 20 it was a truthy string and opened /v1.
    with running(tmp_path, {"TRIAGE_API_OPEN": "False", "TRIAGE_API_KEYS_FILE": str(keys)}) as server:
        body = {"findings": {"bladder": "retention"}}
        refused = requests.post(f"{server.url}/v1/triage", json=body, timeout=TIMEOUT)
        assert refused.status_code == 401
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        allowed = requests.post(
            f"{server.url}/v1/triage", json=body, headers={"X-API-Key": "s3cret-key-1"}, timeout=TIMEOUT
        )
        assert allowed.status_code == 200 and allowed.json()["triage"]["level"] == "emergency"
        assert requests.get(f"{server.url}/readyz", timeout=TIMEOUT).status_code == 200
    log = server.log_text()
    assert "s3cret-key-1" not in log
    assert "open mode" not in log and "NOT authenticated" not in log


def test_gunicorn_announces_open_modes_as_its_settings_read_them(tmp_path):
    # The warning comes from the typed settings (any spelling of true), not from the Makefile's shell.
    with running(tmp_path, {"TRIAGE_API_OPEN": "Yes", "TRIAGE_CDS_AUTH_DISABLED": "On"}) as server:
        assert requests.get(f"{server.url}/cds-services", timeout=TIMEOUT).status_code == 200
    log = server.log_text()
    assert "CDS Hooks calls are NOT authenticated" in log
    assert "open mode: /v1" in log


def test_metrics_are_summed_across_workers(tmp_path):
    with running(tmp_path, {"WEB_CONCURRENCY": "2"}) as server:
        calls = 40
        for i in range(calls):  # a new connection each time, so both workers take some
            with requests.Session() as session:
                findings = exam(CASES[i % len(CASES)].changes)
                assert session.post(f"{server.url}/v1/triage", json={"findings": findings}, timeout=TIMEOUT).ok
        decisions = [e for e in json_lines(server.log_text()) if e.get("event") == "triage_decision"]
        assert len({e["request_id"] for e in decisions}) == len(decisions) == calls
        text = requests.get(f"{server.url}/metrics", timeout=TIMEOUT).text
    requests_total = _samples(text, "triage_http_requests_total")
    assert requests_total[(("method", "POST"), ("route", "/v1/triage"), ("status", "200"))] == calls
    assert sum(_samples(text, "triage_decisions_total").values()) == calls
    counts = _samples(text, "triage_http_request_duration_seconds_count")
    assert counts[(("method", "POST"), ("route", "/v1/triage"))] == calls


@pytest.mark.soak
def test_soak_memory_stays_flat_and_nothing_fails(tmp_path):
    """About a minute at steady concurrency; worker recycling off so a leak would show."""
    env = {"WEB_CONCURRENCY": "2", "GUNICORN_MAX_REQUESTS": "0", "LOG_LEVEL": "WARNING"}
    bodies = [{"findings": exam(case.changes)} for case in CASES]
    with running(tmp_path, env) as server:
        workers = server.wait_workers(2)  # the first worker can answer /readyz before the second forks
        stop = threading.Event()
        counts = {"ok": 0, "failed": 0}
        lock = threading.Lock()

        def load() -> None:
            i = 0
            with requests.Session() as session:
                while not stop.is_set():
                    try:
                        response = session.post(f"{server.url}/v1/triage", json=bodies[i % len(bodies)], timeout=10)
                        good = response.status_code == 200
                    except requests.RequestException:
                        good = False
                    with lock:
                        counts["ok" if good else "failed"] += 1
                    i += 1

        threads = [threading.Thread(target=load) for _ in range(SOAK_THREADS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(5)  # warm-up: imports, caches and allocator pools settle
            before = {pid: _rss_kib(pid) for pid in workers}
            time.sleep(SOAK_SECONDS)
            after = {pid: _rss_kib(pid) for pid in workers}
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=15)
        assert server.worker_pids() == workers, "a worker was replaced during the soak"
    assert counts["failed"] == 0
    assert counts["ok"] > SOAK_SECONDS * 20, counts  # the load really ran
    growth = {pid: after[pid] - before[pid] for pid in workers}
    assert all(g < RSS_GROWTH_LIMIT_KIB for g in growth.values()), growth


def test_gunicorn_own_errors_do_not_quote_the_request(tmp_path):
    """gunicorn answers malformed requests itself and logs them; the request line must not be logged."""
    canary = f"CANARY{uuid.uuid4().hex}"
    bad_requests = [
        f"GET /v1/knowledge?mrn={canary} HTTP/9.9\r\nHost: x\r\n\r\n",
        f"GET /v1/knowledge?mrn={canary} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        f"GE\x01T /{canary} HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    with running(tmp_path, {"WEB_CONCURRENCY": "1"}) as server:
        for raw in bad_requests:
            with socket.create_connection((LOOPBACK, server.port), timeout=TIMEOUT) as conn:
                conn.sendall(raw.encode("latin-1"))
                answer = conn.recv(4096)
            assert answer.startswith(b"HTTP/1.1 400"), answer[:80]
        time.sleep(0.5)
        text = server.log_text()
    assert "Invalid request from ip=" in text and "(request withheld)" in text
    assert canary not in text


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


def _response(method: str = "GET"):
    from gunicorn.config import Config
    from gunicorn.http import wsgi

    from service.serving import install

    install()
    request = type("Req", (), {"method": method, "version": (1, 1), "headers": [], "should_close": lambda s: False})()
    sock = _Recorder()
    response = wsgi.Response(request, sock, Config())
    return response, sock


def test_a_response_goes_out_in_one_write_with_its_header():
    response, sock = _response()
    response.start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "7")])
    response.write(b'{"a":1}')
    response.close()
    assert len(sock.writes) == 1
    assert sock.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and sock.writes[0].endswith(b'\r\n\r\n{"a":1}')


def test_an_empty_response_still_sends_its_header_on_close():
    response, sock = _response()
    response.start_response("204 No Content", [])
    response.close()
    assert len(sock.writes) == 1 and sock.writes[0].startswith(b"HTTP/1.1 204")


def test_an_open_mode_beyond_loopback_refuses_to_start_even_with_credentials(tmp_path):
    """Issue 20: TRIAGE_API_OPEN (any spelling of true) or TRIAGE_CDS_AUTH_DISABLED with a keys file
    configured still refuses a non-loopback bind."""
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"keys:\n  - id: ops-1\n    sha256: {key_hash('s3cret-key-1')}\n    scopes: [triage]\n")
    for setting in ({"TRIAGE_API_OPEN": "True"}, {"TRIAGE_CDS_AUTH_DISABLED": "yes"}):
        env = {**os.environ, "BIND": f"0.0.0.0:{free_port()}", "TRIAGE_API_KEYS_FILE": str(keys), **setting}
        done = subprocess.run(GUNICORN_COMMAND, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0, setting
        assert "refusing to start" in done.stderr and next(iter(setting)) in done.stderr


def test_a_cds_trust_file_without_a_public_base_url_refuses_a_non_loopback_bind(tmp_path):
    """Issue 20 item 8: without TRIAGE_PUBLIC_BASE_URL a token minted for another host was accepted when
    the request carried that Host, and card links pointed there."""
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"keys:\n  - id: ops-1\n    sha256: {key_hash('s3cret-key-1')}\n    scopes: [triage]\n")
    env = {
        **os.environ,
        "BIND": f"0.0.0.0:{free_port()}",
        "TRIAGE_API_KEYS_FILE": str(keys),
        "TRIAGE_CDS_TRUST_FILE": str(ROOT / "deploy" / "cds-trust.example.yaml"),
    }
    env.pop("TRIAGE_PUBLIC_BASE_URL", None)
    done = subprocess.run(GUNICORN_COMMAND, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "refusing to start" in done.stderr and "TRIAGE_PUBLIC_BASE_URL" in done.stderr


def test_a_misspelt_or_malformed_setting_stops_gunicorn_by_name():
    env = {**os.environ, "TRIAGE_API_OPNE": "true", "TRIAGE_CDS_AUTH_DISABLED": "maybe"}
    done = subprocess.run(GUNICORN_COMMAND, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "TRIAGE_API_OPNE: not a setting of this service" in done.stderr
    assert "TRIAGE_CDS_AUTH_DISABLED: Not a boolean" in done.stderr


def test_a_negative_port_stops_gunicorn_by_name():
    env = {**os.environ, "PORT": "-1"}
    env.pop("BIND", None)
    done = subprocess.run(GUNICORN_COMMAND, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "PORT: Must be greater than or equal to 1 and less than or equal to 65535." in done.stderr


def test_gunicorn_builds_no_access_log_fields_it_would_throw_away(monkeypatch, tmp_path):
    """The production config's logger is gunicorn's with its access log off for good: with logconfig_dict
    set, gunicorn's own Logger formatted every request's access fields for a logger with no handler."""
    import runpy

    from gunicorn.config import Config

    # Set, so that reading the config leaves the environment as it was (it fills in both when unset).
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("TRIAGE_REPLAY_STORE", f"sqlite://{tmp_path}/replay.sqlite3")
    settings = runpy.run_path("deploy/gunicorn.conf.py")
    cfg = Config()
    for name in ("logger_class", "logconfig_dict", "accesslog", "errorlog", "loglevel"):
        cfg.set(name, settings[name])
    logger = cfg.logger_class(cfg)
    assert not logger.access_log_enabled
    built = []
    monkeypatch.setattr(logger, "atoms", lambda *a: built.append(a) or {})
    logger.access(None, None, {}, None)
    assert built == []
    stock = type(logger).__mro__[1](cfg)  # gunicorn's own Logger, the same settings
    assert stock.access_log_enabled  # what the subclass turns off
