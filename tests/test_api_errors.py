"""problem+json (RFC 9457) behaviour of every error path, request ids, and the happy-path shapes."""

from __future__ import annotations

import json
import re
from typing import Any

import flask
import pytest

from schemas.triage import PAIN_LOCATIONS
from tests.bad_json import BAD_JSON
from tests.helpers import assert_problem

JSON = {"Content-Type": "application/json"}
HEX_ID = re.compile(r"[0-9a-f]{32}")
VALID = {"findings": {"bladder": "retention"}}


def field_errors(body: dict[str, Any]) -> dict[str, dict[str, str]]:
    assert body.get("errors"), body
    return {e["field"]: e for e in body["errors"]}


def post_raw(client, data: bytes, headers: dict[str, str] | None = None):
    return client.post("/v1/triage", data=data, headers=JSON if headers is None else headers)


# --- 400: the body is not one unambiguous JSON document ------------------------------------------
@pytest.mark.parametrize(("data", "reason"), BAD_JSON)
def test_400_invalid_json(client, data, reason):
    body = assert_problem(post_raw(client, data), 400)
    assert reason in body["detail"]
    assert "errors" not in body


@pytest.mark.parametrize(
    "data",
    [
        # a later duplicate must never silently override a red flag
        pytest.param(b'{"findings": {"bladder": "retention", "bladder": "normal"}}', id="bladder-twice"),
        pytest.param(b'{"findings": {"bladder": "retention"}, "findings": {}}', id="findings-twice"),
        pytest.param(
            b'{"findings": {"history": {"trauma": "present", "trauma": "absent"}}}',
            id="nested-twice",
        ),
    ],
)
def test_400_duplicate_keys(client, data):
    body = assert_problem(post_raw(client, data), 400)
    assert "duplicate" in body["detail"]


# --- 415 / 413 -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Content-Type": "text/plain"}, id="text-plain"),
        pytest.param({}, id="no-content-type"),
        pytest.param({"Content-Type": "application/x-www-form-urlencoded"}, id="form"),
    ],
)
def test_415_not_json(client, headers):
    response = client.post("/v1/triage", data=b'{"findings": {"bladder": "retention"}}', headers=headers)
    body = assert_problem(response, 415)
    assert "application/json" in body["detail"]


def test_413_body_over_64_kib(client):
    padding = "a" * (64 * 1024)
    data = ('{"findings": {}, "padding": "' + padding + '"}').encode()
    assert len(data) > 64 * 1024
    assert_problem(post_raw(client, data), 413)


def test_64_kib_limit_is_not_hit_by_a_normal_request(client):
    response = client.post("/v1/triage", json=VALID)
    assert response.status_code == 200


# --- 422: valid JSON that does not match the schema ----------------------------------------------
@pytest.mark.parametrize(
    ("payload", "field", "pointer"),
    [
        pytest.param({"findings": {}, "extra": 1}, "extra", "#/extra", id="unknown-top-level-key"),
        pytest.param({"findings": {"bladdr": "retention"}}, "findings.bladdr", "#/findings/bladdr", id="typo-key"),
        pytest.param(
            {"findings": {"pain": {"severty": 5}}},
            "findings.pain.severty",
            "#/findings/pain/severty",
            id="unknown-deep-key",
        ),
        pytest.param({"patient": {"age": 40}}, "findings", "#/findings", id="missing-findings"),
        pytest.param({"findings": []}, "findings", "#/findings", id="findings-array"),
        pytest.param({"findings": "bladder"}, "findings", "#/findings", id="findings-string"),
        pytest.param({"findings": None}, "findings", "#/findings", id="findings-null"),
        pytest.param({"findings": {"pain": {"severity": "5"}}}, "findings.pain.severity", "", id="sev-str"),
        pytest.param({"findings": {"pain": {"severity": 5.5}}}, "findings.pain.severity", "", id="sev-float"),
        pytest.param({"findings": {"pain": {"severity": 5.0}}}, "findings.pain.severity", "", id="sev-5.0"),
        pytest.param({"findings": {"pain": {"severity": True}}}, "findings.pain.severity", "", id="sev-true"),
        pytest.param({"findings": {"pain": {"severity": 11}}}, "findings.pain.severity", "", id="sev-11"),
        pytest.param({"findings": {"pain": {"severity": -1}}}, "findings.pain.severity", "", id="sev-minus-1"),
        pytest.param({"findings": {}, "patient": {"age": 131}}, "patient.age", "#/patient/age", id="age-131"),
        pytest.param({"findings": {}, "patient": {"age": -1}}, "patient.age", "#/patient/age", id="age-minus-1"),
        pytest.param({"findings": {"bladder": "leaking"}}, "findings.bladder", "#/findings/bladder", id="enum"),
        pytest.param({"findings": {"bladder": "Retention"}}, "findings.bladder", "#/findings/bladder", id="enum-case"),
        pytest.param({"findings": {"bladder": 1}}, "findings.bladder", "#/findings/bladder", id="enum-not-string"),
        pytest.param(
            {"findings": {"pain": {"locations": ["low_back", "low_back"]}}},
            "findings.pain.locations",
            "#/findings/pain/locations",
            id="duplicate-items",
        ),
        pytest.param(
            {"findings": {"pain": {"locations": [*PAIN_LOCATIONS, "low_back"]}}},
            "findings.pain.locations",
            "#/findings/pain/locations",
            id="too-many-items",
        ),
        pytest.param(
            {"findings": {"pain": {"locations": "low_back"}}},
            "findings.pain.locations",
            "#/findings/pain/locations",
            id="list-as-string",
        ),
        pytest.param({"findings": {"pain": None}}, "findings.pain", "#/findings/pain", id="null-nested-object"),
        pytest.param({"findings": {"slr": None}}, "findings.slr", "#/findings/slr", id="null-slr"),
        pytest.param({"findings": {"bladder": None}}, "findings.bladder", "#/findings/bladder", id="null-enum"),
        pytest.param({"findings": {"pain": []}}, "findings.pain", "#/findings/pain", id="nested-not-object"),
        pytest.param(
            {"findings": {"sensation": {"status": "normal", "areas": ["groin"]}}},
            "findings.sensation.areas",
            "#/findings/sensation/areas",
            id="normal-sensation-with-areas",
        ),
        pytest.param(["findings"], "(body)", "#", id="body-array"),
        pytest.param("findings", "(body)", "#", id="body-string"),
        pytest.param(None, "(body)", "#", id="body-null"),
        pytest.param(7, "(body)", "#", id="body-number"),
    ],
)
def test_422_schema_errors(client, payload, field, pointer):
    response = post_raw(client, json.dumps(payload).encode())
    body = assert_problem(response, 422)
    errors = field_errors(body)
    assert field in errors, body["errors"]
    expected_pointer = pointer or "#/" + field.replace(".", "/")
    assert errors[field]["pointer"] == expected_pointer
    assert errors[field]["detail"]


def test_422_unknown_nested_key_path_is_exact(client):
    body = assert_problem(client.post("/v1/triage", json={"findings": {"bladdr": "retention"}}), 422)
    assert body["errors"] == [{"field": "findings.bladdr", "pointer": "#/findings/bladdr", "detail": "Unknown field."}]


def test_422_reports_every_error(client):
    payload = {"patient": {"age": 131}, "findings": {"bladdr": "retention", "pain": {"severity": 11}}}
    body = assert_problem(client.post("/v1/triage", json=payload), 422)
    assert set(field_errors(body)) == {"patient.age", "findings.bladdr", "findings.pain.severity"}


def test_422_pointer_escapes_per_rfc_6901(client):
    body = assert_problem(client.post("/v1/triage", json={"findings": {"a/b~c": 1}}), 422)
    assert body["errors"] == [{"field": "findings.a/b~c", "pointer": "#/findings/a~1b~0c", "detail": "Unknown field."}]


def test_422_unknown_key_named_schema_is_reported_at_its_own_path(client):
    body = assert_problem(client.post("/v1/triage", json={"findings": {"_schema": "x"}}), 422)
    assert body["errors"] == [
        {"field": "findings._schema", "pointer": "#/findings/_schema", "detail": "Unknown field."}
    ]


def test_422_never_echoes_the_submitted_value(client):
    canary = "CANARY-7f3a"
    for payload in (
        {"findings": {"bladder": canary}},
        {"findings": {"pain": {"locations": [canary]}}},
        {"findings": {"pain": {"severity": canary}}},
        {"findings": {}, "patient": {"sex": canary, "age": canary}},
        {"findings": {"sensation": {"status": "normal", "areas": [canary]}}},
    ):
        response = client.post("/v1/triage", json=payload)
        assert_problem(response, 422)
        assert canary not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'{"findings": {"pain": {"severity": 1' + b"0" * 5000 + b"}}}", id="in-a-field"),
        pytest.param(b'{"findings": {}, "x": 1' + b"0" * 5000 + b"}", id="in-an-unknown-key"),
    ],
)
def test_huge_integer_literal_is_a_client_error(app, client, monkeypatch, data):
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)  # see test_500_is_problem_json
    response = post_raw(client, data)
    assert response.status_code in (400, 422), response.get_data(as_text=True)
    assert_problem(response, response.status_code)


# --- 404 / 405 -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/no/such/path",
        "/v1/rules/NO-SUCH-RULE",
        "/v1/rules/" + "R" * 65,
        "/v1/sources/999",
        "/v1/sources/" + "0" * 17,
    ],
)
def test_404_problem(client, path):
    assert_problem(client.get(path), 404)


def test_404_unknown_rule_and_source_say_where_to_look(client):
    assert "/v1/knowledge" in assert_problem(client.get("/v1/rules/NO-SUCH-RULE"), 404)["detail"]
    assert "/v1/sources" in assert_problem(client.get("/v1/sources/999"), 404)["detail"]


def test_405_keeps_allow_header(client):
    response = client.get("/v1/triage")
    assert_problem(response, 405)
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert "POST" in allowed


def test_405_on_read_only_resource(client):
    response = client.post("/v1/knowledge", json={})
    assert_problem(response, 405)
    assert "GET" in {m.strip() for m in response.headers["Allow"].split(",")}


# --- X-Request-ID --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "request_id", ["0f8fad5b-d9cb-469f-a165-70867728950e", "0F8FAD5B-D9CB-469F-A165-70867728950E", "ab" * 16]
)
def test_well_formed_request_id_is_echoed(client, request_id):
    response = client.post("/v1/triage", json={"findings": {"bladdr": 1}}, headers={"X-Request-ID": request_id})
    assert response.headers["X-Request-ID"] == request_id
    assert assert_problem(response, 422)["request_id"] == request_id
    ok = client.get("/livez", headers={"X-Request-ID": request_id})
    assert ok.status_code == 200
    assert ok.headers["X-Request-ID"] == request_id


@pytest.mark.parametrize(
    "request_id",
    ["has spaces in it", "a" * 65, "semi;colon", "slash/id", "", "<script>", "smith-mrn-12345", "ab" * 17],
    ids=["spaces", "65-chars", "semicolon", "slash", "empty", "markup", "free-text", "34-hex"],
)
def test_malformed_request_id_is_replaced(client, request_id):
    response = client.post("/v1/triage", json={"findings": {"bladdr": 1}}, headers={"X-Request-ID": request_id})
    generated = response.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(generated)
    assert generated != request_id
    body = assert_problem(response, 422)
    assert body["request_id"] == generated
    if request_id:
        assert request_id not in response.get_data(as_text=True)


def test_missing_request_id_is_generated_and_unique(client):
    ids = {client.get("/livez").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3
    assert all(HEX_ID.fullmatch(i) for i in ids)


# --- 500 -----------------------------------------------------------------------------------------
def test_500_is_problem_json(app, client, monkeypatch):
    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom CANARY")

    # The `app` fixture runs with TESTING=True, which makes Flask re-raise exceptions into the
    # test instead of answering; production (gunicorn) does not propagate them.
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    monkeypatch.setattr("service.routes.triage.evaluate", boom)
    response = client.post("/v1/triage", json=VALID)
    body = assert_problem(response, 500)
    text = response.get_data(as_text=True)
    assert "boom" not in text
    assert "CANARY" not in text
    assert "RuntimeError" not in text
    assert HEX_ID.fullmatch(body["request_id"])


# --- happy paths ---------------------------------------------------------------------------------
def test_triage_200_shape(client, triage):
    response = client.post("/v1/triage", json=VALID)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.get_json()
    assert set(body) == {
        *("triage", "scope", "causes", "referrals", "advice", "missing", "conflicts", "trace", "knowledge"),
        "disclaimer",
    }
    assert body["triage"]["level"] == "emergency"
    assert "RF-CES-BLADDER" in body["triage"]["rules"]
    assert body == triage({"bladder": "retention"})
    assert HEX_ID.fullmatch(response.headers["X-Request-ID"])


def test_triage_accepts_json_with_charset(client):
    response = client.post(
        "/v1/triage", data=b'{"findings": {}}', headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize("content_type", ["Application/JSON", "application/json;charset=UTF-8", "application/x+json"])
def test_triage_takes_every_json_media_type_webargs_takes(client, content_type):
    # The exact header "application/json" is checked before werkzeug parses it; the rest still is.
    response = client.post("/v1/triage", data=b'{"findings": {}}', headers={"Content-Type": content_type})
    assert response.status_code == 200


def test_the_body_parse_is_webargs_parse(app):
    from service.routes.triage import TRIAGE_REQUEST_SCHEMA, blp

    parser = blp.ARGUMENTS_PARSER
    for body in (b'{"findings": {"bladder": "retention"}}', b'{"findings": {}, "patient": {"age": 40}}'):
        with app.test_request_context("/v1/triage", method="POST", data=body, headers=JSON):
            fast = parser.parse_body(TRIAGE_REQUEST_SCHEMA, flask.request)
            assert fast == parser.parse(TRIAGE_REQUEST_SCHEMA, flask.request, location="json")


def test_knowledge(client, kb):
    response = client.get("/v1/knowledge")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.get_json()
    assert {"version", "sha256", "levels", "findings", "rules", "causes", "advice"} <= body.keys()
    assert body["version"] == kb.version
    assert body["sha256"] == kb.sha256
    assert [r["id"] for r in body["rules"]] == [r.id for r in kb.rules]


def test_knowledge_describes_the_scope_the_policy_and_the_authorities(client):
    """Issue 19: the intended population, the policy as a source, and what each authority means."""
    body = client.get("/v1/knowledge").get_json()
    assert body["intended_use"]["min_age"] == 16
    assert body["intended_use"]["document"] == "docs/clinical-safety/intended-use.md"
    assert set(body["intended_use"]["notes"]) == {"in", "out", "unknown"}
    assert [a["id"] for a in body["authorities"]] == ["clinical", "fitness", "service_policy"]
    policy_rules = [r for r in body["rules"] if any(c["source"] == "SP" for c in r["citations"])]
    assert policy_rules and all(
        c["authority"] == "service_policy" for r in policy_rules for c in r["citations"] if c["source"] == "SP"
    )
    assert body["conflicts"][0]["id"] == "CF-PAIN-WITHOUT-PLACE"


def test_rule(client):
    response = client.get("/v1/rules/RF-CES-BLADDER")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.get_json()
    assert body["id"] == "RF-CES-BLADDER"
    assert body["level"] == "emergency"
    assert body["citations"]


def test_sources(client):
    response = client.get("/v1/sources")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    sources = response.get_json()["sources"]
    assert len(sources) == 6  # the five texts and the service's own policy
    for source in sources:
        assert {"id", "file", "held", "title", "kind", "sha256", "sections"} <= source.keys()
        assert re.fullmatch(r"[0-9a-f]{64}", source["sha256"])
    assert len({s["id"] for s in sources}) == 6
    assert [s["id"] for s in sources if s["held"] == "project"] == ["SP"]


def test_source_detail(client):
    response = client.get("/v1/sources/000")
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == "000"
    assert body["citations"]
    assert all(c["source"] == "000" for c in body["citations"].values())


def test_livez(client):
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.get_json() == {"status": "pass"}


def test_readyz(client, kb):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "pass", "knowledge": {"version": kb.version, "sha256": kb.sha256}}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("post", "/v1/triage", VALID), ("post", "/v1/triage", {"findings": {"x": 1}}), ("get", "/v1/knowledge", None),
     ("get", "/readyz", None), ("get", "/no/such/path", None), ("get", "/docs", None)],
)  # fmt: skip
def test_every_response_names_the_knowledge_version(client, kb, method, path, body):
    response = getattr(client, method)(path, json=body) if body is not None else getattr(client, method)(path)
    assert response.headers["X-Knowledge-Version"] == kb.version
