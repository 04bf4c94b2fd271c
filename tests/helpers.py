"""Helpers several test modules share: request generators and problem+json checks (no test module
imports another)."""

from __future__ import annotations

import os
from typing import Any

import flask
from hypothesis import strategies as st

from schemas.triage import TriageRequest
from service import create_app
from service.engine.model import Finding
from service.knowledge import load_knowledge
from tests.scenarios import fetch, put

KB = load_knowledge()
# `make test-fast` sets TEST_TIER=fast: property tests draw a tenth of their examples there (at least
# 20); `make test`, what CI runs, draws them all.
FAST = os.environ.get("TEST_TIER") == "fast"


def examples(count: int) -> int:
    """How many examples a property test draws in this tier."""
    return max(20, count // 10) if FAST else count


STATUS, AREAS = "findings.sensation.status", "findings.sensation.areas"
SET_PATHS = sorted(p for p, f in KB.findings.items() if f.kind == "set")


def value_st(finding: Finding) -> st.SearchStrategy:
    """Any value the schema accepts for a finding."""
    if finding.kind == "set":
        return st.lists(st.sampled_from(finding.values), unique=True, max_size=len(finding.values))
    if finding.kind == "int":
        return st.integers(finding.minimum, finding.maximum)
    return st.sampled_from(finding.values)


@st.composite
def requests_st(draw: st.DrawFn) -> dict:
    """A whole request: each finding (and the patient's age) given or left out at random."""
    request: dict = {"findings": {}}
    for path, finding in KB.findings.items():
        if draw(st.booleans()):
            put(request, path, draw(value_st(finding)))
    if fetch(request, STATUS) == "normal":
        put(request, AREAS, None)  # the schema forbids areas with normal sensation
    return request


def valid(request: dict) -> dict:
    """A generated request through the real contract."""
    return TriageRequest().load(request)


@st.composite
def partial_sets_st(draw: st.DrawFn) -> tuple[dict, str, list, list]:
    """A valid request with one set finding known only in part, as FHIR reports it: (request, path,
    members present, members absent); the members listed in neither are unknown."""
    request = valid(draw(requests_st()))
    path = draw(st.sampled_from(SET_PATHS))
    values = KB.findings[path].values
    present = draw(st.lists(st.sampled_from(values), unique=True))
    rest = [v for v in values if v not in present]
    absent = draw(st.lists(st.sampled_from(rest), unique=True)) if rest else []
    if path == AREAS and fetch(request, STATUS) == "normal":
        put(request, STATUS, "reduced")  # areas only exist with abnormal sensation
    put(request, path, {"present": present, "absent": absent})
    return request, path, present, absent


PROBLEM = "application/problem+json"


def make_app(**config: Any) -> flask.Flask:
    """An app for one test's own settings (the `app` fixture is the shared open one)."""
    return create_app({"TESTING": True, **config})


def assert_problem(response: Any, status: int, detail: str = "") -> dict[str, Any]:
    """The response (a Flask test response, or anything with status_code, headers and get_json) is an
    RFC 9457 problem with this status, its request id in the body and the header; returns the body."""
    assert response.status_code == status, response.get_data()[:500]
    assert response.headers["Content-Type"] == PROBLEM
    body = response.get_json(force=True)
    assert isinstance(body, dict)
    assert {"type", "title", "status"} <= body.keys()
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    for entry in body.get("errors", ()):
        assert set(entry) == {"field", "pointer", "detail"}
        assert entry["pointer"].startswith("#")
    # every response, error or not, carries the request id in the header and the body
    assert body.get("request_id") == response.headers["X-Request-ID"]
    assert detail in body.get("detail", ""), body
    return body


def preflight(client: Any, origin: str, path: str, request_headers: str) -> Any:
    """A CORS preflight for a POST to `path` from `origin`, asking to send `request_headers`."""
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": request_headers,
        },
    )
