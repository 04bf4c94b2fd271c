"""POST /v1/triage/batch: each case answered or rejected on its own, exactly as POST /v1/triage would."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import flask
import pytest
import yaml
from prometheus_client import REGISTRY
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from bench.workload import scenario_mix
from schemas.batch import DEFAULT_MAX_CASES, BatchResponse
from schemas.examples import TRIAGE_REQUEST
from service import create_app
from service.audit import findings_fingerprint
from service.auth.policy import key_hash
from service.config import DefaultConfig
from tests.bad_json import BAD_JSON
from tests.helpers import assert_problem
from tests.live import request_id
from tests.logcapture import all_logged, events

BATCH = "/v1/triage/batch"
SINGLE = "/v1/triage"
JSON = {"Content-Type": "application/json"}
KIB = 1024
SMALL_MAX = 3  # BATCH_MAX_CASES of the `small` app
SMALL_BODY = 16 * KIB  # BATCH_MAX_CONTENT_LENGTH of the `small` app
RESULT_KEYS = {"results", "answered", "rejected", "knowledge"}
TRIAGE_KEY = "tk_test_batch_3c1f0e9d8b7a6c5d4e3f"
KNOWLEDGE_KEY = "tk_test_batch_knowledge_0a1b2c3d4e"

# Bodies POST /v1/triage refuses with 422, for every way a case can be wrong.
INVALID_CASES = [
    pytest.param({"findings": {"bladdr": "retention"}}, id="typo-key"),
    pytest.param({"findings": {}, "extra": 1}, id="unknown-top-level-key"),
    pytest.param({"patient": {"age": 40}}, id="missing-findings"),
    pytest.param({"findings": {"pain": {"severity": "5"}}}, id="severity-string"),
    pytest.param({"findings": {"pain": {"severity": True}}}, id="severity-true"),
    pytest.param({"findings": {"pain": {"severity": 11}}}, id="severity-11"),
    pytest.param({"findings": {"bladder": None}}, id="null-enum"),
    pytest.param({"findings": {"pain": {"locations": ["low_back", "low_back"]}}}, id="duplicate-items"),
    pytest.param({"findings": {"sensation": {"status": "normal", "areas": ["groin"]}}}, id="cross-field"),
    pytest.param({"findings": {"a/b~c": 1}}, id="pointer-escapes"),
    pytest.param({"findings": {"_schema": "x"}}, id="key-named-schema"),
    pytest.param(
        {"patient": {"age": 131}, "findings": {"bladdr": "retention", "pain": {"severity": 11}}}, id="several"
    ),
    pytest.param(["findings"], id="case-array"),
    pytest.param("findings", id="case-string"),
    pytest.param(None, id="case-null"),
    pytest.param(7, id="case-number"),
    pytest.param(True, id="case-true"),
]


def post(client: Any, body: Any, **kwargs: Any) -> Any:
    return client.post(BATCH, data=json.dumps(body).encode(), headers={**JSON, **kwargs.pop("headers", {})}, **kwargs)


def batch_ok(response: Any) -> dict[str, Any]:
    """A 200 batch response, checked against BatchResponse (the documented shape); returns its body."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/json"
    body = response.get_json()
    assert set(body) == RESULT_KEYS
    assert BatchResponse().validate(body) == {}
    assert [r["index"] for r in body["results"]] == list(range(len(body["results"])))
    statuses = [r["status"] for r in body["results"]]
    assert body["answered"] == statuses.count(200)
    assert body["rejected"] == statuses.count(422)
    for result in body["results"]:
        assert set(result) == {"index", "status", "answer" if result["status"] == 200 else "problem"}
    return body


def single_problem(client: Any, case: Any) -> dict[str, Any]:
    """POST /v1/triage's 422 body for the case, without the request id (the batch's is in its header)."""
    body = assert_problem(client.post(SINGLE, data=json.dumps(case).encode(), headers=JSON), 422)
    body.pop("request_id")
    return body


@pytest.fixture(scope="module")
def small() -> flask.testing.FlaskClient:
    config = {"TESTING": True, "API_OPEN": True, "BATCH_MAX_CASES": SMALL_MAX, "BATCH_MAX_CONTENT_LENGTH": SMALL_BODY}
    return create_app(config).test_client()


# --- answers -------------------------------------------------------------------------------------
def test_every_scenario_answered_as_the_single_call_answers_it(client, kb):
    cases = scenario_mix()
    body = batch_ok(post(client, {"cases": cases}))
    assert body["answered"] == len(cases) and body["rejected"] == 0
    assert body["knowledge"] == {"version": kb.version, "sha256": kb.sha256}
    for case, result in zip(cases, body["results"], strict=True):
        single = client.post(SINGLE, json=case)
        assert single.status_code == 200
        assert result["answer"] == single.get_json(), result["index"]


def test_each_case_answered_or_rejected_on_its_own(client, triage):
    cases = [
        {"findings": {"bladder": "retention"}},
        {"findings": {"bladder": "leaking"}},
        TRIAGE_REQUEST,
        "not a case",
        {"findings": {}},
        {"findings": {"pain": {"severity": 11}}},
    ]
    body = batch_ok(post(client, {"cases": cases}))
    assert [r["status"] for r in body["results"]] == [200, 422, 200, 422, 200, 422]
    assert (body["answered"], body["rejected"]) == (3, 3)
    results = body["results"]
    assert results[0]["answer"] == triage({"bladder": "retention"})
    assert results[2]["answer"] == client.post(SINGLE, json=TRIAGE_REQUEST).get_json()
    assert results[4]["answer"] == triage({})
    assert [e["field"] for e in results[1]["problem"]["errors"]] == ["findings.bladder"]
    assert [e["field"] for e in results[3]["problem"]["errors"]] == ["(body)"]
    assert [e["field"] for e in results[5]["problem"]["errors"]] == ["findings.pain.severity"]


def test_every_case_rejected_is_still_200(client):
    body = batch_ok(post(client, {"cases": [None, {"findings": []}, {}]}))
    assert (body["answered"], body["rejected"]) == (0, 3)


@pytest.mark.parametrize("case", INVALID_CASES)
def test_rejected_case_gets_the_single_calls_problem(client, case):
    body = batch_ok(post(client, {"cases": [{"findings": {}}, case]}))
    ok, rejected = body["results"]
    assert ok["status"] == 200
    assert rejected == {"index": 1, "status": 422, "problem": single_problem(client, case)}


def test_red_flag_typo_rejects_that_case_only(client, triage):
    cases = [
        {"findings": {"bowel": "incontinence"}},
        {"findings": {"bladdr": "retention"}},  # meant bladder: never silently unknown
        {"findings": {"bladder": "retention"}},
    ]
    body = batch_ok(post(client, {"cases": cases}))
    first, typo, last = body["results"]
    assert typo["status"] == 422
    assert typo["problem"]["errors"] == [
        {"field": "findings.bladdr", "pointer": "#/findings/bladdr", "detail": "Unknown field."}
    ]
    assert first["answer"] == triage({"bowel": "incontinence"})
    assert last["answer"] == triage({"bladder": "retention"})
    assert first["answer"]["triage"]["level"] == last["answer"]["triage"]["level"] == "emergency"


def test_no_submitted_value_is_echoed_or_logged(client, logs):
    canary = "CANARY-b47c"
    cases = [
        {"findings": {"bladder": canary}},
        {"findings": {}, "patient": {"sex": canary, "age": canary}},
        canary,
        {"findings": {"pain": {"locations": [canary]}}},
    ]
    response = post(client, {"cases": cases})
    body = batch_ok(response)
    assert body["rejected"] == len(cases)
    assert canary not in response.get_data(as_text=True)
    assert canary not in all_logged(logs)


# --- errors of the request itself ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "field", "detail"),
    [
        pytest.param({}, "cases", "Missing data for required field.", id="missing"),
        pytest.param({"cases": []}, "cases", "Send at least one case.", id="empty"),
        pytest.param({"cases": {"findings": {}}}, "cases", "Not a valid list.", id="object"),
        pytest.param({"cases": "x"}, "cases", "Not a valid list.", id="string"),
        pytest.param({"cases": None}, "cases", "Field may not be null.", id="null"),
        pytest.param({"cases": 3}, "cases", "Not a valid list.", id="number"),
        pytest.param({"cases": [{"findings": {}}], "extra": 1}, "extra", "Unknown field.", id="unknown-key"),
        pytest.param({"case": [{"findings": {}}], "cases": [{"findings": {}}]}, "case", "Unknown field.", id="typo"),
        pytest.param([{"findings": {}}], "(body)", "Invalid input type.", id="body-array"),
        pytest.param({"findings": {}}, "findings", "Unknown field.", id="single-call-body"),
    ],
)
def test_422_for_the_request_itself(client, payload, field, detail):
    body = assert_problem(post(client, payload), 422)
    assert {"field": field, "pointer": "#" + ("" if field == "(body)" else "/" + field), "detail": detail} in body[
        "errors"
    ]
    assert "results" not in body


def test_too_many_cases_names_the_maximum(small):
    body = assert_problem(post(small, {"cases": [{"findings": {}}] * (SMALL_MAX + 1)}), 422)
    assert body["errors"] == [
        {"field": "cases", "pointer": "#/cases", "detail": f"Too many cases: at most {SMALL_MAX} per request."}
    ]
    assert batch_ok(post(small, {"cases": [{"findings": {}}] * SMALL_MAX}))["answered"] == SMALL_MAX


def test_default_maximum_is_500_and_is_what_openapi_states(client):
    assert DefaultConfig.BATCH_MAX_CASES == DEFAULT_MAX_CASES == 500
    assert batch_ok(post(client, {"cases": [{"findings": {}}] * 500}))["answered"] == 500
    assert_problem(post(client, {"cases": [{"findings": {}}] * 501}), 422)


@pytest.mark.parametrize(("data", "reason"), BAD_JSON)
def test_400_invalid_json(client, data, reason):
    body = assert_problem(client.post(BATCH, data=data, headers=JSON), 400)
    assert reason in body["detail"]


def test_duplicate_key_inside_one_case_is_400_for_the_whole_request(client):
    data = b'{"cases": [{"findings": {}}, {"findings": {"bladder": "retention", "bladder": "normal"}}]}'
    assert "duplicate" in assert_problem(client.post(BATCH, data=data, headers=JSON), 400)["detail"]


@pytest.mark.parametrize("headers", [{"Content-Type": "text/plain"}, {}], ids=["text-plain", "none"])
def test_415_not_json(client, headers):
    response = client.post(BATCH, data=b'{"cases": [{"findings": {}}]}', headers=headers)
    assert "application/json" in assert_problem(response, 415)["detail"]


def test_405_keeps_allow_header(client):
    response = client.get(BATCH)
    assert_problem(response, 405)
    assert "POST" in {m.strip() for m in response.headers["Allow"].split(",")}


# --- body limit: BATCH_MAX_CONTENT_LENGTH on this route only ---------------------------------------
def padded_batch(size: int) -> bytes:
    """A batch body of at least `size` bytes: complete exams, indented."""
    cases = scenario_mix()
    while True:
        data = json.dumps({"cases": cases}, indent=2).encode()
        if len(data) >= size:
            return data
        cases = cases + cases


def test_100_case_batch_over_64_kib_is_accepted(client):
    cases = (scenario_mix() * 2)[:100]
    data = json.dumps({"cases": cases}, indent=2).encode()
    assert len(data) > 64 * KIB
    assert batch_ok(client.post(BATCH, data=data, headers=JSON))["answered"] == 100


def test_413_over_the_batch_limit(client):
    limit = DefaultConfig.BATCH_MAX_CONTENT_LENGTH
    assert limit == 4 * KIB * KIB
    data = b'{"cases": [{"findings": {}}], "padding": "' + b"a" * limit + b'"}'
    assert_problem(client.post(BATCH, data=data, headers=JSON), 413)


def test_batch_limit_is_configurable_and_leaves_the_single_call_at_64_kib(small):
    over = padded_batch(SMALL_BODY + 1)
    assert_problem(small.post(BATCH, data=over, headers=JSON), 413)
    single = b'{"findings": {}, "padding": "' + b"a" * (64 * KIB) + b'"}'
    assert_problem(small.post(SINGLE, data=single, headers=JSON), 413)
    under = json.dumps({"cases": [{"findings": {}}]}).encode()
    assert batch_ok(small.post(BATCH, data=under, headers=JSON))["answered"] == 1


def chunked(client: Any, data: bytes) -> Any:
    """POST a body without Content-Length, as gunicorn passes a chunked one (wsgi.input_terminated)."""
    environ = EnvironBuilder(path=BATCH, method="POST", input_stream=io.BytesIO(data), headers=JSON).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    return client.open(Request(environ))


def test_chunked_body_over_the_batch_limit_is_413(small):
    assert_problem(chunked(small, padded_batch(SMALL_BODY + 1)), 413)
    within = json.dumps({"cases": [{"findings": {}}] * SMALL_MAX}).encode()
    assert batch_ok(chunked(small, within))["answered"] == SMALL_MAX


# --- audit and metrics -----------------------------------------------------------------------------
def decisions_counted(channel: str, kb: Any) -> float:
    total = 0.0
    for level in ("emergency", "urgent", "routine", "self_care"):
        labels = {"level": level, "channel": channel, "knowledge": kb.version}
        total += REGISTRY.get_sample_value("triage_decisions_total", labels) or 0.0
    return total


def test_one_audit_event_per_answered_case(client, logs, kb):
    cases = [TRIAGE_REQUEST, {"findings": {"bladdr": "retention"}}, {"findings": {"bladder": "retention"}}, None]
    before = decisions_counted("batch", kb)
    body = batch_ok(post(client, {"cases": cases}, headers={"X-Request-ID": request_id("batch-audit-1")}))
    found = events(logs, "triage_decision")
    answered = [r["answer"] for r in body["results"] if r["status"] == 200]
    assert len(found) == len(answered) == 2
    for event, case, answer in zip(found, (cases[0], cases[2]), answered, strict=True):
        assert event["channel"] == "batch"
        assert event["request_id"] == request_id("batch-audit-1")
        assert event["triage_level"] == answer["triage"]["level"]
        assert event["rules"] == [t["rule"] for t in answer["trace"]]
        assert event["knowledge_sha256"] == kb.sha256
        assert event["findings_fingerprint"] == findings_fingerprint(case)
        assert "findings" not in event and "patient" not in event
    assert decisions_counted("batch", kb) - before == 2


def test_rejected_request_audits_nothing(client, logs):
    assert_problem(post(client, {"cases": [{"findings": {}}], "extra": 1}), 422)
    assert_problem(post(client, {"cases": [{"findings": {}}] * 501}), 422)
    assert not events(logs, "triage_decision")


# --- access: the triage scope, as POST /v1/triage ---------------------------------------------------
def test_401_without_credentials():
    closed = create_app({"TESTING": True}).test_client()
    response = post(closed, {"cases": [TRIAGE_REQUEST]})
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert "results" not in response.get_json()


def test_needs_the_triage_scope(tmp_path: Path):
    entries = [
        {"id": "triage", "sha256": key_hash(TRIAGE_KEY), "scopes": ["triage"], "revoked": False},
        {"id": "reader", "sha256": key_hash(KNOWLEDGE_KEY), "scopes": ["knowledge"], "revoked": False},
    ]
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": entries}), encoding="utf-8")
    keyed = create_app({"TESTING": True, "API_KEYS_FILE": str(keys)}).test_client()
    assert batch_ok(post(keyed, {"cases": [TRIAGE_REQUEST]}, headers={"X-API-Key": TRIAGE_KEY}))["answered"] == 1
    assert_problem(post(keyed, {"cases": [TRIAGE_REQUEST]}, headers={"X-API-Key": KNOWLEDGE_KEY}), 403)


# --- the OpenAPI document ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def operation() -> dict[str, Any]:
    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "openapi.yaml").read_text(encoding="utf-8"))
    return spec["paths"][BATCH]["post"]


def test_openapi_documents_the_batch(operation):
    assert operation["operationId"] == "triageBatch"
    assert {"200", "400", "413", "415", "422"} <= set(operation["responses"])
    example = operation["responses"]["200"]["content"]["application/json"]["example"]
    assert [r["status"] for r in example["results"]] == [200, 422]


def test_request_example_gives_the_documented_response(client, operation):
    request = operation["requestBody"]["content"]["application/json"]["example"]
    documented = operation["responses"]["200"]["content"]["application/json"]["example"]
    assert batch_ok(post(client, request)) == documented
