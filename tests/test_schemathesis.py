"""Schemathesis against the service under real gunicorn on loopback, from the committed openapi.yaml.

Positive and negative cases (examples, coverage and fuzzing phases), every default check, bounded and
deterministic. One test per operation: a failure shows schemathesis' report with a curl line to replay it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0
MAX_EXAMPLES = 40
SERVICE_ID = "leg-raise-triage"  # the one CDS service (service/cds/services.py)
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _spec_as_served() -> dict[str, Any]:
    """openapi.yaml as committed, minus the CDS Hooks JWT requirement.

    The server below runs with TRIAGE_CDS_AUTH_DISABLED (JWT refusals are tested in test_cds_trust.py and
    test_cds_gunicorn.py), so `security` would only make the ignored_auth, missing_required_header and
    negative_data_rejection checks expect a 401 this server is configured not to give. Nothing else changes.
    """
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    for item in spec["paths"].values():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                operation.pop("security", None)
    return spec


# fhirServer is `format: url` (apispec's name for marshmallow's Url field, http/https only), a format
# schemathesis does not know: without this it sends arbitrary strings such as "" as valid URLs. Hosts
# with a top-level label of 2+ characters or no dot, as marshmallow's URL validator requires.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,12}[a-z0-9])?"
schemathesis.openapi.format(
    "url",
    st.from_regex(
        rf"\Ahttps?://(?:{_LABEL}\.){{0,3}}[a-z][a-z0-9]{{1,8}}(?::[0-9]{{2,5}})?(?:/[A-Za-z0-9._~-]{{1,12}}){{0,3}}\Z"
    ),
)

POSITIVE_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis' default
CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True},  # positive + negative
        # A random service id only ever gets 404 (after the body is validated); the real one reaches the engine.
        "parameters": {"service_id": SERVICE_ID},
        "operations": [
            {
                # 412 is CDS Hooks' answer to a valid call whose prefetch is missing when no FHIR server can be
                # read (none is allowed here): documented, and not a rejection of the request's shape.
                "include-operation-id": "cdsTriage",
                "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_ACCEPTED, "412"]}},
            }
        ],
    }
)
schema = schemathesis.openapi.from_dict(_spec_as_served(), config=CONFIG)


# --- a real gunicorn with the production config on loopback ------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _wait_ready(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last_error = "no attempt"
    with requests.Session() as probe:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                last_error = f"gunicorn exited with code {process.returncode}"
                break
            try:
                response = probe.get(f"{url}/readyz", timeout=2)
                if response.status_code == 200:
                    return
                last_error = f"/readyz answered {response.status_code}"
            except requests.RequestException as exc:
                last_error = type(exc).__name__
            time.sleep(0.2)
    pytest.fail(f"gunicorn not ready within {START_TIMEOUT:.0f} s ({last_error}); log:\n{_log(log_path)}")


def _stop(process: subprocess.Popen, log_path: Path) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)
        pytest.fail(f"gunicorn did not stop within {STOP_TIMEOUT:.0f} s of SIGTERM; log:\n{_log(log_path)}")


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("gunicorn-schemathesis") / "gunicorn.log"
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIAGE_")}
    env.update(
        BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
        TRIAGE_API_OPEN="true",  # /v1 without credentials: loopback only
        TRIAGE_CDS_AUTH_DISABLED="true",
        LOG_LEVEL="WARNING",
    )
    command = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "service:create_app()"]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log_path)
    except BaseException:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)
        raise
    yield url
    code = _stop(process, log_path)
    assert code == 0, f"gunicorn exited with {code} after SIGTERM; log:\n{_log(log_path)}"
    events = [json.loads(line) for line in _log(log_path).splitlines() if line.startswith("{")]
    errors = [e for e in events if e.get("level") in ("error", "critical")]  # a 500, a dead worker
    assert not errors, f"the server logged errors: {errors[:5]}"


@pytest.fixture(scope="module")
def session(live_url: str) -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


@schema.parametrize()
def test_api_conforms_to_openapi_yaml(case: schemathesis.Case, live_url: str, session: requests.Session) -> None:
    case.call_and_validate(base_url=live_url, session=session, timeout=REQUEST_TIMEOUT)
