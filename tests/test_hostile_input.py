"""Hostile requests against the service under real gunicorn (deploy/gunicorn.conf.py) on loopback.

Every request goes over a raw socket, so bodies, headers and request lines are sent exactly as written.
Each answer must be the right 4xx with the right body (problem+json for /v1 and the rest, a FHIR
OperationOutcome for /cds-services, gunicorn's own page for what it refuses before the app), never a 500.
The last tests check that the server still triages correctly and that no worker died on the way.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bad_json import BAD_JSON
from tests.helpers import PROBLEM, assert_problem
from tests.live import LOOPBACK as HOST
from tests.live import ROOT, Replica, json_lines, running

pytestmark = pytest.mark.live

IO_TIMEOUT = 10.0  # every socket operation once the server is up
WORKERS = 2
JSON = "application/json"
KIB = 1024
V1_LIMIT = 64 * KIB  # MAX_CONTENT_LENGTH
CDS_LIMIT = 2 * KIB * KIB  # CDS_MAX_CONTENT_LENGTH
TRIAGE = "/v1/triage"
CDS_SERVICE = "/cds-services/leg-raise-triage"
CDS_FEEDBACK = f"{CDS_SERVICE}/feedback"
VALID_TRIAGE = {"findings": {"bladder": "retention"}}
VALID_FEEDBACK = {
    "feedback": [
        {
            "card": "9f5c1d2e-3b4a-4c6d-8e7f-0a1b2c3d4e5f",
            "outcome": "overridden",
            "outcomeTimestamp": "2026-11-22T10:05:31Z",
        }
    ]
}
VALID_CDS_CALL = {
    "hook": "patient-view",
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "context": {"userId": "Practitioner/123", "patientId": "1288992"},
    "prefetch": {"patient": {"resourceType": "Patient", "id": "1288992"}, "observations": None, "conditions": None},
}


# --- the server ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    if not Path("/proc/self/stat").is_file():
        pytest.skip("needs /proc to watch gunicorn's workers")
    env = {
        "WEB_CONCURRENCY": str(WORKERS),
        "TRIAGE_CDS_AUTH_DISABLED": "true",  # JWT refusals are tested in test_cds_trust.py / test_cds_gunicorn.py
        "GUNICORN_MAX_REQUESTS": "0",  # no planned recycling: a new worker pid can only mean a dead worker
        "LOG_LEVEL": "WARNING",
    }
    # clean_env: no inherited TRIAGE_* setting; /v1 is open without credentials (loopback only, see live.py)
    with running(tmp_path_factory.mktemp("gunicorn-hostile"), env, clean_env=True) as replica:
        yield replica


@pytest.fixture(scope="module", autouse=True)
def startup_workers(server: Replica) -> list[int]:
    """Worker pids right after start-up, before the first test of this module (autouse)."""
    return server.wait_workers(WORKERS)


def _livez_status(port: int) -> int | None:
    try:
        return exchange(port, request_bytes("GET", "/livez"), timeout=2).status
    except OSError:
        return None


# --- raw HTTP ------------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def status_code(self) -> int:  # the names of Flask's test response, for tests/helpers.py
        return self.status

    def json(self) -> Any:
        return json.loads(self.body)

    def get_json(self, force: bool = False) -> Any:
        return self.json()

    def get_data(self) -> bytes:
        return self.body


def request_bytes(method: str, target: str, body: bytes | None = None, content_type: str | None = None) -> bytes:
    """One HTTP/1.1 request, exactly as given: Content-Length only when there is a body."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}", "Connection: close"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked_bytes(target: str, body: bytes, chunk: int = 16 * KIB) -> bytes:
    head = f"POST {target} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\nContent-Type: {JSON}\r\n"
    chunks = b"".join(
        b"%x\r\n" % len(body[i : i + chunk]) + body[i : i + chunk] + b"\r\n" for i in range(0, len(body), chunk)
    )
    return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"


def exchange(
    port: int, data: bytes, *, method: str = "GET", half_close: bool = False, timeout: float = IO_TIMEOUT
) -> Reply:
    """Send the bytes, read one response. A server may answer (413) before reading a large body."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the answer, if any, is already on its way
        response = http.client.HTTPResponse(sock, method=method)
        try:
            response.begin()
            return Reply(response.status, response.msg, response.read())
        finally:
            response.close()


def send(server: Replica, method: str, target: str, body: bytes | None = None, **kwargs: Any) -> Reply:
    return exchange(server.port, request_bytes(method, target, body, **kwargs), method=method)


def post_json(server: Replica, target: str, body: bytes, content_type: str | None = JSON) -> Reply:
    return send(server, "POST", target, body, content_type=content_type)


# --- expected answers ----------------------------------------------------------------------------
ISSUE_CODES = {400: "structure", 404: "not-found", 405: "not-supported", 413: "too-costly", 415: "not-supported"}


def assert_outcome(reply: Reply, status: int, diagnostics: str = "") -> dict[str, Any]:
    assert reply.status == status, reply.body[:500]
    assert reply.content_type == JSON, reply.content_type
    body = reply.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"], body
    for issue in body["issue"]:
        assert issue["severity"] == "error"
        assert issue["code"] == ISSUE_CODES.get(status, "invalid"), body
    assert any(diagnostics in issue.get("diagnostics", "") for issue in body["issue"]), body
    return body


def assert_error(reply: Reply, target: str, status: int, detail: str = "") -> None:
    if target.startswith("/cds-services"):
        assert_outcome(reply, status, detail)
    else:
        assert_problem(reply, status, detail)


# --- 1. bodies the strict JSON parser refuses (400) ----------------------------------------------
def nested_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nested_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"0" + b"}" * depth


DEEP = [
    # 60000 brackets and 13000 {"a": levels still fit in 64 KiB: the parser's depth guard answers
    pytest.param(TRIAGE, nested_array(60_000)[:60_000], id="v1-array-60k-deep"),
    pytest.param(TRIAGE, nested_object(13_000)[:65_000], id="v1-object-13k-deep"),
    # the CDS limit (2 MiB) lets 100k levels through to the parser
    pytest.param(CDS_SERVICE, nested_array(100_000), id="cds-array-100k-deep"),
    pytest.param(CDS_SERVICE, nested_object(100_000), id="cds-object-100k-deep"),
    pytest.param(CDS_FEEDBACK, b"[" * 100_000, id="cds-feedback-array-100k-deep-unclosed"),
]


@pytest.mark.parametrize("target", [TRIAGE, CDS_SERVICE, CDS_FEEDBACK], ids=["v1", "cds", "cds-feedback"])
@pytest.mark.parametrize(("body", "detail"), BAD_JSON)
def test_invalid_json_is_400(server, target, body, detail):
    reply = post_json(server, target, body)
    assert_error(reply, target, 400, detail)
    assert b"Invalid JSON body: " in reply.body


@pytest.mark.parametrize(("target", "body"), DEEP)
def test_deep_nesting_is_400(server, target, body):
    assert_error(post_json(server, target, body), target, 400, "nesting too deep")


def test_body_shorter_than_its_content_length_is_400(server):
    # The client announces 100 bytes, sends a complete-looking document and stops sending.
    head = f"POST {TRIAGE} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {JSON}\r\nContent-Length: 100\r\n\r\n"
    reply = exchange(server.port, head.encode() + b'{"findings": {}}', method="POST", half_close=True)
    assert_problem(reply, 400, "shorter than its Content-Length")


# --- 2. too large (413) --------------------------------------------------------------------------
TOO_LARGE = [
    pytest.param(TRIAGE, nested_array(100_000), id="v1-array-100k-deep"),
    pytest.param(TRIAGE, nested_object(100_000), id="v1-object-100k-deep"),
    pytest.param(TRIAGE, b"[" + b"0," * 999_999 + b"0]", id="v1-million-element-array"),
    pytest.param(TRIAGE, b'{"findings": {"bladder": "' + b"a" * KIB * KIB + b'"}}', id="v1-1-mib-string"),
    pytest.param(TRIAGE, b'{"findings": {}}' + b" " * V1_LIMIT, id="v1-just-over-64-kib"),
    pytest.param(CDS_SERVICE, b'{"hook": "' + b"a" * (3 * KIB * KIB) + b'"}', id="cds-3-mib"),
]


@pytest.mark.parametrize(("target", "body"), TOO_LARGE)
def test_body_over_the_limit_is_413(server, target, body):
    assert_error(post_json(server, target, body), target, 413)


@pytest.mark.parametrize(
    ("target", "body"),
    [
        # valid JSON, then white space and garbage past the limit: must not be cut at the limit and accepted
        pytest.param(TRIAGE, json.dumps(VALID_TRIAGE).encode() + b" " * V1_LIMIT + b"garbage", id="v1-valid-prefix"),
        pytest.param(TRIAGE, b'{"findings": {"bladder": "' + b"a" * KIB * KIB + b'"}}', id="v1-1-mib"),
        pytest.param(CDS_SERVICE, json.dumps(VALID_CDS_CALL).encode() + b" " * CDS_LIMIT + b"x", id="cds-valid-prefix"),
    ],
)
def test_chunked_body_over_the_limit_is_413(server, target, body):
    reply = exchange(server.port, chunked_bytes(target, body), method="POST")
    assert_error(reply, target, 413)


def test_chunked_body_within_the_limit_is_read_whole(server):
    body = json.dumps(VALID_TRIAGE).encode() + b" " * (V1_LIMIT - len(json.dumps(VALID_TRIAGE)))
    assert len(body) == V1_LIMIT
    reply = exchange(server.port, chunked_bytes(TRIAGE, body), method="POST")
    assert reply.status == 200, reply.body[:500]
    assert reply.json()["triage"]["level"] == "emergency"


# --- 3. well-formed JSON that does not match the schema (422) ------------------------------------
# (An unpaired surrogate and 1e400 are refused as JSON since issue 20: tests/bad_json.py, 400.)
SCHEMA_ERRORS = [
    pytest.param(TRIAGE, b"[" + b"0," * 30_000 + b"0]", "(body)", id="v1-array-body-within-64-kib"),
    pytest.param(TRIAGE, b'{"findings": [' + b"0," * 30_000 + b"0]}", "findings", id="v1-findings-array"),
    pytest.param(TRIAGE, b'{"findings": {"bladder": "' + b"a" * 60 * KIB + b'"}}', "findings.bladder", id="v1-60-kib"),
    pytest.param(TRIAGE, b'{"findings": {"bladder": "\\u0000"}}', "findings.bladder", id="v1-nul-in-string"),
    pytest.param(CDS_SERVICE, b"[" + b"0," * 999_999 + b"0]", "(body)", id="cds-million-element-array"),
    pytest.param(CDS_SERVICE, b'{"hook": "' + b"a" * KIB * KIB + b'"}', "hook", id="cds-1-mib-string"),
    pytest.param(CDS_SERVICE, b"{}", "hook", id="cds-empty-object"),
    pytest.param(CDS_FEEDBACK, b'{"feedback": []}', "feedback", id="cds-feedback-empty-list"),
]


@pytest.mark.parametrize(("target", "body", "field"), SCHEMA_ERRORS)
def test_schema_mismatch_is_422(server, target, body, field):
    reply = post_json(server, target, body)
    if target.startswith("/cds-services"):
        issues = assert_outcome(reply, 422)["issue"]
        assert field in {e for issue in issues for e in issue.get("expression", [])}, issues
    else:
        errors = assert_problem(reply, 422)["errors"]
        assert field in {e["field"] for e in errors}, errors


def test_value_with_a_trailing_newline_does_not_pass_a_pattern(server):
    # Python's `$` matches before a final newline; the documented (ECMA-262) patterns do not.
    call = {**VALID_CDS_CALL, "context": {"userId": "Practitioner/123", "patientId": "1288992\n"}}
    issues = assert_outcome(post_json(server, CDS_SERVICE, json.dumps(call).encode()), 422)["issue"]
    assert {e for issue in issues for e in issue["expression"]} == {"context.patientId"}


def test_malformed_prefetch_is_422_even_when_other_data_is_missing(server):
    # The patient is missing (it would need the FHIR server: 412) and the observations are malformed.
    call = {**VALID_CDS_CALL, "prefetch": {"observations": {"resourceType": "Bundle", "entry": [True]}}}
    issues = assert_outcome(post_json(server, CDS_SERVICE, json.dumps(call).encode()), 422)["issue"]
    assert {e for issue in issues for e in issue["expression"]} == {"prefetch.observations"}


# --- 4. not JSON at all (415) ----------------------------------------------------------------------
NOT_JSON = [
    pytest.param("text/plain", id="text-plain"),
    pytest.param("application/x-www-form-urlencoded", id="form-urlencoded"),
    pytest.param("multipart/form-data; boundary=xyz", id="multipart"),
    pytest.param("application/xml", id="xml"),
    pytest.param(None, id="no-content-type"),
]


@pytest.mark.parametrize("target", [TRIAGE, CDS_SERVICE, CDS_FEEDBACK], ids=["v1", "cds", "cds-feedback"])
@pytest.mark.parametrize("content_type", NOT_JSON)
def test_body_not_sent_as_json_is_415(server, target, content_type):
    if content_type and content_type.startswith("multipart"):
        body = b'--xyz\r\nContent-Disposition: form-data; name="findings"\r\n\r\n{}\r\n--xyz--\r\n'
    elif content_type == "application/x-www-form-urlencoded":
        body = b"findings=%7B%7D"
    else:
        body = json.dumps(VALID_TRIAGE).encode()
    assert_error(post_json(server, target, body, content_type=content_type), target, 415, "application/json")


# --- 5. what gunicorn refuses before the app sees it -----------------------------------------------
def _raw(line: str, headers: str = "") -> bytes:
    return f"{line}\r\nHost: {HOST}\r\nConnection: close\r\n{headers}\r\n".encode()


GUNICORN_REFUSALS = [
    # limit_request_field_size = 8190
    pytest.param(_raw("GET /livez HTTP/1.1", "X-Big: " + "a" * 10 * KIB + "\r\n"), 431, id="10-kib-header"),
    # limit_request_fields = 50
    pytest.param(_raw("GET /livez HTTP/1.1", "".join(f"X-H{i}: v\r\n" for i in range(60))), 431, id="too-many-headers"),
    # limit_request_line = 4094
    pytest.param(_raw("GET /livez?q=" + "a" * 5000 + " HTTP/1.1"), 414, id="request-line-5000"),
    pytest.param(_raw("GET /" + "a" * 10_000 + " HTTP/1.1"), 414, id="path-10000"),
    pytest.param(b"\x00\x01\x02 garbage\r\n\r\n", 400, id="garbage-request-line"),
    pytest.param(_raw("GET /livez HTTP/9.9"), 400, id="http-9.9"),
    # request smuggling shapes
    pytest.param(_raw(f"POST {TRIAGE} HTTP/1.1", "Content-Length: -1\r\n"), 400, id="negative-content-length"),
    pytest.param(
        _raw(f"POST {TRIAGE} HTTP/1.1", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n") + b"0\r\n\r\n",
        400,
        id="content-length-and-chunked",
    ),
    pytest.param(
        _raw(f"POST {TRIAGE} HTTP/1.1", f"Content-Type: {JSON}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n")
        + b"{}",
        400,
        id="two-content-types",
    ),
    pytest.param(_raw("GET /livez HTTP/1.1", f"Host: {HOST}\r\n"), 400, id="two-hosts"),
]


@pytest.mark.parametrize(("data", "status"), GUNICORN_REFUSALS)
def test_gunicorn_refuses_malformed_http(server, data, status):
    reply = exchange(server.port, data)
    assert reply.status == status, reply.body[:300]
    # Issue 20, item 10: gunicorn's own refusal is problem+json too (service/serving.py), quoting
    # nothing of the request; the app never ran, so there is no request id.
    assert reply.content_type == "application/problem+json", reply.content_type
    problem = json.loads(reply.body)
    assert problem["status"] == status and set(problem) == {"type", "title", "status", "detail"}
    assert not any(quoted in reply.body for quoted in (b"X-", b"aaaa", b"garbage", b"9.9", b"-1", b"chunked"))
    assert "X-Request-ID" not in reply.headers
    assert _livez_status(server.port) == 200  # and the server keeps answering


# --- 6. every method on every documented path ----------------------------------------------------
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "BREW"]
PATH_VALUES = {
    "rule_id": "RF-CES-BLADDER",
    "source_id": "000",
    "citation_id": "000.seek.ces_bladder_bowel",
    "service_id": "leg-raise-triage",
}


def _documented() -> dict[str, set[str]]:
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    return {
        path.format(**PATH_VALUES): {m.upper() for m in item if m.upper() in METHODS}
        for path, item in spec["paths"].items()
    }


DOCUMENTED = _documented()
UNKNOWN_PATHS = ["/no/such/path", "/v1/rules/a/b", "/v1/triage/x", "/cds-services/no-such-service/x/y"]


def _allowed(documented: set[str]) -> set[str]:
    return documented | {"OPTIONS"} | ({"HEAD"} if "GET" in documented else set())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("target", sorted(DOCUMENTED))
def test_every_method_on_every_documented_path(server, target, method):
    documented = DOCUMENTED[target]
    reply = send(server, method, target)
    assert reply.status < 500, reply.body[:500]
    if method in documented and method == "GET":
        assert reply.status == 200, reply.body[:500]
        assert reply.content_type == JSON
        assert reply.json()
    elif method in documented:  # POST without a body: it is not JSON
        assert_error(reply, target, 415)
    elif method == "HEAD" and "GET" in documented:
        assert (reply.status, reply.content_type, reply.body) == (200, JSON, b"")
    elif method == "OPTIONS":
        assert reply.status == 200
        assert reply.body == b""
    elif method == "HEAD":  # 405 without a body, as HEAD must
        assert (reply.status, reply.body) == (405, b"")
        assert reply.content_type == (JSON if target.startswith("/cds-services") else PROBLEM)
    else:
        assert_error(reply, target, 405)
    if reply.status == 405 or method == "OPTIONS":
        assert {m.strip() for m in reply.headers["Allow"].split(",")} == _allowed(documented)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("target", UNKNOWN_PATHS)
def test_every_method_on_an_unknown_path_is_404(server, target, method):
    reply = send(server, method, target)
    if method == "HEAD":
        assert (reply.status, reply.body) == (404, b"")
    else:
        assert_error(reply, target, 404)


def test_valid_call_to_an_unknown_cds_service_is_404(server):
    reply = post_json(server, "/cds-services/no-such-service", json.dumps(VALID_CDS_CALL).encode())
    assert_outcome(reply, 404, "No CDS service")


# --- 7. afterwards: the same server still answers correctly, with the same workers ---------------
def test_valid_requests_still_answer(server, triage):
    reply = post_json(server, TRIAGE, json.dumps(VALID_TRIAGE).encode())
    assert reply.status == 200, reply.body[:500]
    assert reply.json() == json.loads(json.dumps(triage(VALID_TRIAGE["findings"])))
    assert reply.json()["triage"]["level"] == "emergency"
    cds = post_json(server, CDS_SERVICE, json.dumps(VALID_CDS_CALL).encode())
    assert cds.status == 200, cds.body[:500]
    assert cds.json() == {"cards": []}  # nothing recorded for the patient: no card
    feedback = post_json(server, CDS_FEEDBACK, json.dumps(VALID_FEEDBACK).encode())
    assert feedback.status == 200, feedback.body[:500]


def test_no_worker_died_and_nothing_was_logged_as_an_error(server, startup_workers):
    assert server.process.poll() is None, f"gunicorn exited; log:\n{server.log_text()}"
    assert server.worker_pids() == startup_workers, f"a worker was replaced; log:\n{server.log_text()}"
    events = json_lines(server.log_text(), strict=True)
    errors = [e for e in events if e.get("level") in ("error", "critical")]
    assert not errors, errors[:5]
    assert "Traceback" not in server.log_text()


def test_a_malformed_chunked_body_is_a_400_problem(server):
    """Issue 20 item 10: a chunk size that is not hexadecimal made the body read raise inside the app (500)."""
    head = _raw(f"POST {TRIAGE} HTTP/1.1", f"Content-Type: {JSON}\r\nTransfer-Encoding: chunked\r\n")
    reply = exchange(server.port, head + b"zz\r\n{}\r\n0\r\n\r\n", method="POST")
    assert_problem(reply, 400, "Invalid JSON body")
