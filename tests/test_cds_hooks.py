"""CDS Hooks 2.0.1 over HTTP: discovery, calls, prefetch states, FHIR reads, mapping files, CORS and client JWTs.

Everything goes through the Flask test client; FHIR servers and JWK Sets are stubs on 127.0.0.1.
Spec examples are those of CDS Hooks 2.0.1 (../shared/reference/cds-hooks-2.0-notes.md §2.1 and §3).
Clinical expectations name the source section they follow (see tests/test_clinical_rules.py).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import re
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import flask
import pytest
import yaml

from service import create_app
from service.cds.extract import Gathered, at_age, extract
from service.cds.fhir_out import EXT_LEVEL, EXT_RULE, OWN_SYSTEM
from service.cds.mapping import AGE, BUNDLED, Ages, MappingError, load_mapping, read_ages
from service.engine.logic import Atom
from tests.fhir_cases import (
    PATIENT_ID,
    SERVICE_URL,
    assessment,
    bundle,
    call_for,
    hook_call,
    observation,
    observations_for,
    patient,
    walk,
)
from tests.fhir_stub import FhirStub, fhir_stub
from tests.helpers import make_app, preflight
from tests.jwt_helpers import JwksServer, SigningKey, make_es384_key, make_rs384_key, mint
from tests.logcapture import all_logged, events
from tests.scenarios import exam

__all__ = ["fhir_stub"]  # the fixture is used by name

WHEN_TO_SEEK = "000 'When to Seek Professional Guidance'"
RED_FLAGS = "001 'Red Flags and When to Seek Medical Help'"
SCT = "http://snomed.info/sct"
LOW_BACK_PAIN = "279039007"
FHIR_TOKEN = "some-opaque-fhir-access-token"
FEEDBACK_URL = SERVICE_URL + "/feedback"

# --- the spec's examples, verbatim ----------------------------------------------------------------
SPEC_CALL: dict[str, Any] = {
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "fhirServer": "http://hooks.smarthealthit.org:9080",
    "hook": "patient-view",
    "fhirAuthorization": {
        "access_token": "some-opaque-fhir-access-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "user/Patient.read user/Observation.read",
        "subject": "cds-service4",
    },
    "context": {"userId": "Practitioner/example", "patientId": "1288992", "encounterId": "89284"},
    "prefetch": {
        "patientToGreet": {
            "resourceType": "Patient",
            "gender": "male",
            "birthDate": "1925-12-23",
            "id": "1288992",
            "active": True,
        }
    },
}
SPEC_FEEDBACK_ACCEPTED: dict[str, Any] = {
    "feedback": [
        {
            "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
            "outcomeTimestamp": "2021-12-11T10:05:31Z",
        }
    ]
}
SPEC_FEEDBACK_OVERRIDDEN: dict[str, Any] = {
    "feedback": [
        {
            "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
            "outcome": "overridden",
            "overrideReason": {
                "reason": {"code": "d7ecf885", "system": "https://example.com/cds-hooks/override-reason-system"},
                "userComment": "A comment entered by the clinician.",
            },
            "outcomeTimestamp": "2020-12-11T00:00:00Z",
        }
    ]
}


# --- apps and clients -----------------------------------------------------------------------------
def cds_app(**config: Any) -> flask.Flask:
    return make_app(CDS_AUTH_DISABLED=True, **config)


def stub_client(stub: FhirStub, **config: Any) -> flask.testing.FlaskClient:
    """A client whose service may read (over http) from the stub FHIR server."""
    return cds_app(CDS_FHIR_HOSTS=stub.host, CDS_FHIR_ALLOW_HTTP=True, **config).test_client()


@pytest.fixture(scope="module")
def cds() -> flask.testing.FlaskClient:
    """Auth disabled, no FHIR host allowed: everything must come from prefetch."""
    return cds_app().test_client()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any DNS lookup or connection attempt fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the service tried to use the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


# --- reading answers ------------------------------------------------------------------------------
def issues(response: Any, status: int) -> list[dict[str, Any]]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"]
    return body["issue"]


def expressions(response: Any, status: int = 422) -> set[str]:
    return {e for issue in issues(response, status) for e in issue.get("expression", [])}


def the_card(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    [card] = response.get_json()["cards"]
    return card


def level(card: dict[str, Any]) -> str:
    code = next(e["valueCoding"]["code"] for e in assessment(card)["extension"] if e["url"] == EXT_LEVEL)
    return code.removeprefix("level-").replace("-", "_")


def rules(card: dict[str, Any]) -> set[str]:
    return {e["valueString"] for e in assessment(card)["extension"] if e["url"] == EXT_RULE}


def section(card: dict[str, Any], heading: str) -> list[str]:
    """The bullet items under a bold heading of the card detail, Markdown escapes removed."""
    lines = card["detail"].split("\n")
    start = lines.index(f"**{heading}:**") if f"**{heading}:**" in lines else None
    if start is None:
        return []
    items = []
    for line in lines[start + 1 :]:
        if not line.startswith("- "):
            break
        items.append(re.sub(r"\\(.)", r"\1", line[2:]))
    return items


def not_used(card: dict[str, Any]) -> list[str]:
    return section(card, "Not used from the record")


def read_in_part(card: dict[str, Any]) -> list[str]:
    return section(card, "Read from the record in part")


def still_to_ask(card: dict[str, Any]) -> list[str]:
    return section(card, "Still to ask")


# --- building FHIR --------------------------------------------------------------------------------
def ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="seconds")


def coded(code: str, system: str = OWN_SYSTEM) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def bladder(value: str, index: int, when: str | None = None, **extra: Any) -> dict[str, Any]:
    return observation(
        "triage|bladder-function", {"valueCodeableConcept": coded(value)}, index=index, when=when, **extra
    )


def flag(token: str, value: bool, index: int, **extra: Any) -> dict[str, Any]:
    return observation(token, {"valueBoolean": value}, index=index, **extra)


def condition(code: str, clinical: str = "active", subject: str = PATIENT_ID, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"cond-{code}-{clinical}",
        "clinicalStatus": coded(clinical, "http://terminology.hl7.org/CodeSystem/condition-clinical"),
        "verificationStatus": coded("confirmed", "http://terminology.hl7.org/CodeSystem/condition-ver-status"),
        "code": coded(code, SCT),
        "subject": {"reference": f"Patient/{subject}"},
        **extra,
    }


def prefetched(
    observations: list[dict[str, Any]] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    vitals: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A call with every key sent; None sends the key as null (nothing recorded)."""
    return hook_call(
        {
            "patient": patient(),
            "observations": None if observations is None else bundle(observations),
            "conditions": None if conditions is None else bundle(conditions),
            "vitals": None if vitals is None else bundle(vitals),
        }
    )


def about(resource: dict[str, Any], patient_id: str) -> dict[str, Any]:
    return {**resource, "subject": {"reference": f"Patient/{patient_id}"}}


def discovery_queries(client: flask.testing.FlaskClient, patient_id: str) -> dict[str, str]:
    """The discovery prefetch templates filled in for a patient."""
    [service, *_] = client.get("/cds-services").get_json()["services"]
    return {key: template.replace("{{context.patientId}}", patient_id) for key, template in service["prefetch"].items()}


def serve(
    stub: FhirStub,
    patient_id: str,
    observations: list[dict[str, Any]],
    conditions: list[dict[str, Any]],
    vitals: list[dict[str, Any]] | None = None,
) -> dict[str, str]:
    """Stub answers for the observations, conditions and vital-signs queries of the bundled mapping."""
    queries = discovery_queries(cds_app().test_client(), patient_id)
    stub.add(queries["observations"], bundle(observations))
    stub.add(queries["conditions"], bundle(conditions))
    stub.add(queries["vitals"], bundle(vitals or []))
    return queries


def fetched(stub: FhirStub) -> list[str]:
    return [unquote(r.path_and_query) for r in stub.requests]


def authorization(stub: FhirStub, token: str = FHIR_TOKEN) -> dict[str, Any]:
    return {
        "fhirServer": stub.base_url,
        "fhirAuthorization": {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/Observation.read patient/Condition.read patient/Patient.read",
            "subject": "leg-raise-triage",
        },
    }


# === 1. discovery =================================================================================
def test_discovery_lists_patient_view_and_order_select_under_one_id(cds):
    response = cds.get("/cds-services")
    assert response.status_code == 200
    services = response.get_json()["services"]
    assert sorted(s["hook"] for s in services) == ["order-select", "patient-view"]
    assert {s["id"] for s in services} == {"leg-raise-triage"}
    for service in services:
        assert {"hook", "id", "description", "title", "prefetch"} <= service.keys()
    for path, value in walk(response.get_json()):
        assert value is not None and value != "" and value != [] and value != {}, path


def test_discovery_prefetch_templates_use_only_the_patient_id(cds):
    for service in cds.get("/cds-services").get_json()["services"]:
        assert set(service["prefetch"]) == {"patient", "observations", "conditions", "vitals"}
        for template in service["prefetch"].values():
            tokens = re.findall(r"\{\{(.*?)\}\}", template)
            assert tokens == ["context.patientId"], template


# === 2. the spec's example requests ===============================================================
def test_spec_example_request_is_refused_for_a_prefetch_key_not_asked_for(cds, no_network):
    [issue] = issues(cds.post(SERVICE_URL, json=SPEC_CALL), 422)
    assert issue["expression"] == ["prefetch.patientToGreet"]
    assert issue["code"] == "invalid"
    assert "unknown" in issue["diagnostics"].lower()


def test_spec_example_with_patient_key_is_412_when_its_fhir_server_is_not_allowed(no_network):
    # http allowed, allow-list empty: the spec's host is refused before any lookup or connection.
    client = cds_app(CDS_FHIR_HOSTS="", CDS_FHIR_ALLOW_HTTP=True).test_client()
    call = copy.deepcopy(SPEC_CALL)
    call["prefetch"] = {"patient": call["prefetch"].pop("patientToGreet")}
    [issue] = issues(client.post(SERVICE_URL, json=call), 412)
    assert issue["code"] == "processing"
    assert issue["expression"] == ["prefetch.observations"]
    assert "host_not_allowed" in issue["diagnostics"]


def test_spec_example_against_a_fhir_server_gives_one_card(fhir_stub):
    retention = about(bladder("retention", 0), "1288992")
    serve(fhir_stub, "1288992", [retention], [])
    call = copy.deepcopy(SPEC_CALL)
    call["prefetch"] = {"patient": call["prefetch"].pop("patientToGreet")}
    call["fhirServer"] = fhir_stub.base_url
    card = the_card(stub_client(fhir_stub).post(SERVICE_URL, json=call))
    assert level(card) == "emergency"  # bladder retention: 000 'When to Seek Professional Guidance' p2
    assert len(fhir_stub.requests) == 3  # observations, conditions, vital signs
    assert all(r.headers["Authorization"] == "Bearer some-opaque-fhir-access-token" for r in fhir_stub.requests)


@pytest.mark.parametrize(
    ("example", "override_reason"),
    [
        (SPEC_FEEDBACK_ACCEPTED, None),
        # Issue 20: a reason the card did not offer may be free text, so it is logged as "other".
        (SPEC_FEEDBACK_OVERRIDDEN, "other"),
    ],
    ids=["accepted", "overridden"],
)
def test_spec_feedback_examples_are_recorded_without_the_comment(cds, logs, example, override_reason):
    response = cds.post(FEEDBACK_URL, json=example)
    assert response.status_code == 200
    assert response.data == b""
    [item] = example["feedback"]
    [event] = events(logs, "cds_feedback")
    assert event["card"] == item["card"]
    assert event["outcome"] == item["outcome"]
    assert event["override_reason"] == override_reason
    assert "A comment entered by the clinician" not in all_logged(logs)


def test_feedback_logs_an_offered_reason_by_its_code(cds, logs):
    item = copy.deepcopy(SPEC_FEEDBACK_OVERRIDDEN["feedback"][0])
    offered = the_card(cds.post(SERVICE_URL, json=call_for(exam({"bladder": "retention"}))))["overrideReasons"]
    item["overrideReason"]["reason"] = {"system": offered[1]["system"], "code": offered[1]["code"]}
    wrong_system = copy.deepcopy(item)
    wrong_system["overrideReason"]["reason"]["system"] = "https://ehr.example/reasons"
    assert cds.post(FEEDBACK_URL, json={"feedback": [item, wrong_system]}).status_code == 200
    assert [e["override_reason"] for e in events(logs, "cds_feedback")] == ["override-findings-outdated", "other"]


def test_feedback_logs_one_event_per_item(cds, logs):
    body = {"feedback": SPEC_FEEDBACK_ACCEPTED["feedback"] + SPEC_FEEDBACK_OVERRIDDEN["feedback"]}
    assert cds.post(FEEDBACK_URL, json=body).status_code == 200
    assert [e["outcome"] for e in events(logs, "cds_feedback")] == ["accepted", "overridden"]


# === 3. prefetch states ===========================================================================
def test_prefetched_data_is_used_without_reading_the_fhir_server(fhir_stub):
    call = {**call_for(exam({"bladder": "retention"})), **authorization(fhir_stub)}
    card = the_card(stub_client(fhir_stub).post(SERVICE_URL, json=call))
    assert level(card) == "emergency"  # 000 'When to Seek Professional Guidance' p2
    assert fhir_stub.requests == []


def test_null_keys_mean_nothing_recorded_and_a_patient_alone_gives_no_card(fhir_stub):
    call = {**prefetched(None, None), **authorization(fhir_stub)}
    response = stub_client(fhir_stub).post(SERVICE_URL, json=call)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}
    assert fhir_stub.requests == []


def test_absent_keys_are_read_with_the_discovery_queries_and_the_bearer_token(fhir_stub):
    client = stub_client(fhir_stub)
    queries = discovery_queries(client, PATIENT_ID)
    fhir_stub.add(queries["patient"], patient())
    fhir_stub.add(queries["observations"], bundle([bladder("retention", 0)]))
    fhir_stub.add(queries["conditions"], bundle([]))
    fhir_stub.add(queries["vitals"], bundle([]))
    card = the_card(client.post(SERVICE_URL, json={**hook_call(), **authorization(fhir_stub)}))
    assert level(card) == "emergency"  # 000 'When to Seek Professional Guidance' p2
    assert fetched(fhir_stub) == [queries[key] for key in ("patient", "observations", "conditions", "vitals")]
    assert fetched(fhir_stub)[0] == f"Patient/{PATIENT_ID}"
    assert all(r.method == "GET" for r in fhir_stub.requests)
    assert all(r.headers["Authorization"] == f"Bearer {FHIR_TOKEN}" for r in fhir_stub.requests)


def test_an_operation_outcome_in_place_of_a_key_is_read_from_the_fhir_server(fhir_stub):
    queries = serve(fhir_stub, PATIENT_ID, [bladder("retention", 0)], [])
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    call = {**prefetched(None, []), **authorization(fhir_stub)}
    call["prefetch"]["observations"] = outcome
    card = the_card(stub_client(fhir_stub).post(SERVICE_URL, json=call))
    assert level(card) == "emergency"  # 000 'When to Seek Professional Guidance' p2
    assert fetched(fhir_stub) == [queries["observations"]]


def test_an_operation_outcome_without_a_fhir_server_is_412(cds):
    call = prefetched(None, None)
    call["prefetch"]["observations"] = {"resourceType": "OperationOutcome", "issue": []}
    [issue] = issues(cds.post(SERVICE_URL, json=call), 412)
    assert issue["code"] == "processing"
    assert issue["expression"] == ["prefetch.observations"]


def _fail_500(stub: FhirStub, query: str) -> None:
    stub.add(query, {"resourceType": "OperationOutcome", "issue": []}, status=500)


def _fail_slowly(stub: FhirStub, query: str) -> None:
    stub.add(query, bundle([]), delay=1.0)  # the service waits 0.3 s


def _fail_redirect(stub: FhirStub, query: str) -> None:
    stub.add(query, b"", status=302, content_type=None, headers={"Location": stub.url("Observation")})


@pytest.mark.parametrize(
    ("answer", "reason"),
    [(_fail_500, "status"), (_fail_slowly, "timeout"), (_fail_redirect, "redirect")],
    ids=["500", "timeout", "redirect"],
)
def test_fhir_server_failures_are_412_processing(fhir_stub, answer, reason):
    queries = discovery_queries(cds_app().test_client(), PATIENT_ID)
    answer(fhir_stub, queries["observations"])
    client = stub_client(fhir_stub, CDS_FHIR_TIMEOUT_SECONDS=0.3)
    call = {**hook_call({"patient": patient(), "conditions": None}), **authorization(fhir_stub)}
    [issue] = issues(client.post(SERVICE_URL, json=call), 412)
    assert issue["code"] == "processing"
    assert issue["expression"] == ["prefetch.observations"]
    assert reason in issue["diagnostics"]
    assert fetched(fhir_stub) == [queries["observations"]]  # asked once, redirect not followed


def test_fetched_data_of_the_wrong_type_is_412(fhir_stub):
    queries = discovery_queries(cds_app().test_client(), PATIENT_ID)
    fhir_stub.add(queries["observations"], patient())
    call = {**hook_call({"patient": patient(), "conditions": None}), **authorization(fhir_stub)}
    [issue] = issues(stub_client(fhir_stub).post(SERVICE_URL, json=call), 412)
    assert issue["expression"] == ["prefetch.observations"]


@pytest.mark.parametrize(
    ("key", "data"),
    [
        ("observations", patient()),
        ("conditions", {"resourceType": "Condition", "id": "c1"}),
        ("patient", bundle([])),
    ],
)
def test_prefetched_data_of_the_wrong_type_is_422(cds, key, data):
    call = prefetched([], [])
    call["prefetch"][key] = data
    assert expressions(cds.post(SERVICE_URL, json=call)) == {f"prefetch.{key}"}


def test_the_fhir_access_token_is_never_logged(fhir_stub, logs):
    token = "fhir-token-7f3c2a9e-never-log-me"
    queries = discovery_queries(cds_app().test_client(), PATIENT_ID)
    fhir_stub.add(queries["observations"], bundle([bladder("retention", 0)]))
    _fail_500(fhir_stub, queries["conditions"])
    client = stub_client(fhir_stub)
    fhir_stub.add(queries["vitals"], bundle([]))
    call = {**hook_call({"patient": patient()}), **authorization(fhir_stub, token)}
    issues(client.post(SERVICE_URL, json=call), 412)
    call["prefetch"]["conditions"] = None
    the_card(client.post(SERVICE_URL, json=call))
    assert [r.headers["Authorization"] for r in fhir_stub.requests] == [f"Bearer {token}"] * 4
    assert events(logs, "cds_data_unavailable") and events(logs, "cds_decision")
    assert token not in all_logged(logs)


# === 4. validation ================================================================================
BASE_CALL = prefetched(None, None)


def _with(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    call = copy.deepcopy(BASE_CALL)
    change(call)
    return call


FHIR_AUTH = SPEC_CALL["fhirAuthorization"]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (_with(lambda c: c.update(unknown=1)), "unknown"),
        (_with(lambda c: c["context"].update(unknownKey="x")), "context.unknownKey"),
        (_with(lambda c: c["context"].pop("patientId")), "context.patientId"),
        (_with(lambda c: c.update(hook="order-sign")), "hook"),
        (_with(lambda c: c.update(fhirAuthorization=FHIR_AUTH)), "fhirServer"),
        (
            _with(
                lambda c: c.update(
                    fhirServer="https://fhir.example", fhirAuthorization={**FHIR_AUTH, "token_type": "MAC"}
                )
            ),
            "fhirAuthorization.token_type",
        ),
        (_with(lambda c: c.update(hookInstance=12345)), "hookInstance"),
        (_with(lambda c: c["prefetch"].update(observations=[])), "prefetch.observations"),
    ],
    ids=[
        "unknown-top-level-key",
        "unknown-context-key",
        "missing-patient-id",
        "hook-not-served",
        "authorization-without-server",
        "token-type-not-bearer",
        "hook-instance-number",
        "prefetch-list",
    ],
)
def test_invalid_calls_are_422_naming_the_field(cds, call, field):
    response = cds.post(SERVICE_URL, json=call)
    assert field in expressions(response)
    assert all(issue["code"] == "invalid" for issue in issues(response, 422))


def test_order_select_context_needs_selections_and_draft_orders(cds):
    call = _with(lambda c: c.update(hook="order-select"))
    assert expressions(cds.post(SERVICE_URL, json=call)) == {"context.selections", "context.draftOrders"}
    call["context"].update(selections=["ServiceRequest/mri-1"], draftOrders={"resourceType": "Bundle", "entry": []})
    assert cds.post(SERVICE_URL, json=call).get_json() == {"cards": []}


def test_malformed_json_is_400(cds):
    [issue] = issues(cds.post(SERVICE_URL, data='{"hook": ', content_type="application/json"), 400)
    assert "JSON" in issue["diagnostics"]


def test_a_body_that_is_not_json_is_415(cds):
    issues(cds.post(SERVICE_URL, data=json.dumps(BASE_CALL), content_type="text/plain"), 415)


def test_an_unknown_service_is_404(cds):
    response = cds.post("/cds-services/other-service", json=BASE_CALL)
    [issue] = issues(response, 404)
    assert issue["code"] == "not-found"
    assert "other-service" not in response.get_data(as_text=True)  # issue 20: the id sent is never echoed


def test_get_on_the_service_url_is_405(cds):
    response = cds.get(SERVICE_URL)
    [issue] = issues(response, 405)  # an OperationOutcome too, though routing fails before any blueprint
    assert issue["code"] == "not-supported"
    assert "POST" in response.headers["Allow"] and "GET" not in response.headers["Allow"]


# === 5. reading FHIR safely =======================================================================
def test_an_observation_about_another_patient_is_422_and_nothing_is_evaluated(cds, logs):
    call = prefetched([bladder("normal", 0), about(bladder("retention", 1), "someone-else")], None)
    [issue] = issues(cds.post(SERVICE_URL, json=call), 422)
    assert issue["expression"] == ["Observation.subject"]  # issue 20: the field is named, not its value
    assert events(logs, "cds_decision") == []


def test_an_unmapped_observation_about_another_patient_is_422_too(cds, logs):
    other = about(
        observation("triage|fever", {"valueBoolean": True}, index=5, code={"text": "Reflexes"}), "someone-else"
    )
    issues(cds.post(SERVICE_URL, json=prefetched([bladder("normal", 0), other], None)), 422)
    assert events(logs, "cds_decision") == []


def test_a_patient_resource_with_another_id_is_422(cds, logs):
    call = prefetched([bladder("retention", 0)], None)
    call["prefetch"]["patient"] = patient(id="someone-else")
    [issue] = issues(cds.post(SERVICE_URL, json=call), 422)
    assert issue["expression"] == ["Patient.id"]
    assert events(logs, "cds_decision") == []


def test_an_unmapped_observation_code_is_listed_not_dropped(cds):
    # LOINC 8310-5 (body temperature) was the example until issue 23 mapped it; heart rate is not mapped.
    pulse = observation(
        "triage|fever", {"valueQuantity": {"value": 72, "unit": "/min"}}, index=99, code={"text": "Heart rate"}
    )
    pulse["code"]["coding"] = [{"system": "http://loinc.org", "code": "8867-4"}]
    card = the_card(cds.post(SERVICE_URL, json=prefetched([*observations_for(exam()), pulse], None)))
    assert "Observation/obs-99 (Heart rate): code not recognised" in not_used(card)


def test_an_entered_in_error_observation_is_not_used(cds):
    # Bladder retention would be an emergency (000 'When to Seek Professional Guidance' p2), but was entered in error.
    findings = exam({"bladder": None})
    wrong = bladder("retention", 99, status="entered-in-error")
    card = the_card(cds.post(SERVICE_URL, json=prefetched([*observations_for(findings), wrong], None)))
    assert level(card) != "emergency"
    assert "RF-CES-BLADDER" not in rules(card)
    assert "Observation/obs-99 (Bladder function): status entered-in-error; not used" in not_used(card)


def test_an_observation_older_than_the_age_limit_is_not_used(cds):
    findings = exam({"bladder": None})
    old = bladder("retention", 99, when=ago(91))  # CDS_MAX_OBSERVATION_AGE_DAYS is 90 by default
    card = the_card(cds.post(SERVICE_URL, json=prefetched([*observations_for(findings), old], None)))
    assert level(card) != "emergency"
    assert "Observation/obs-99 (Bladder function): recorded more than 90 days ago; not used" in not_used(card)


def test_the_age_limit_is_configurable():
    client = cds_app(CDS_MAX_OBSERVATION_AGE_DAYS=400).test_client()
    card = the_card(client.post(SERVICE_URL, json=prefetched([bladder("retention", 0, when=ago(200))], None)))
    assert level(card) == "emergency"  # 000 'When to Seek Professional Guidance' p2


def test_data_absent_reason_leaves_the_finding_unknown_and_asked(cds):
    findings = exam({"bladder": None})
    absent = observation(
        "triage|bladder-function", {"dataAbsentReason": coded("not-performed")}, index=99
    )  # no value at all
    card = the_card(cds.post(SERVICE_URL, json=prefetched([*observations_for(findings), absent], None)))
    assert any(item.startswith("Observation/obs-99 (Bladder function)") for item in not_used(card))
    assert "Any change in bladder function, such as being unable to pass urine (retention) or leaking it " in (
        " ".join(still_to_ask(card))
    )
    assert "(provisional)" in card["summary"]


def test_of_two_observations_at_the_same_time_the_abnormal_one_wins(cds):
    # 000 'When to Seek Professional Guidance' p2: bladder retention needs emergency care.
    same_time = ago(1)
    pair = [bladder("normal", 0, when=same_time), bladder("retention", 1, when=same_time)]
    for observations in (pair, pair[::-1]):
        card = the_card(cds.post(SERVICE_URL, json=prefetched(observations, None)))
        assert level(card) == "emergency"
        assert card["indicator"] == "critical"
        assert "RF-CES-BLADDER" in rules(card)
        assert "Observation/obs-0 (Bladder function): conflicts with a more abnormal record; not used" in (
            not_used(card)
        )


@pytest.mark.parametrize("later", [1, 36500])  # tomorrow, and in 2099 or so
def test_a_future_dated_normal_record_never_supersedes_a_red_flag(cds, later):
    """Issue 20 item 7: bladder retention recorded today and a normal bladder record dated in the future
    keep the critical card (000 'When to Seek Professional Guidance' p2), and the record is named."""
    future = (datetime.now(UTC) + timedelta(days=later)).isoformat(timespec="seconds")
    history = [bladder("retention", 98, when=ago(0)), bladder("normal", 99, when=future)]
    card = the_card(cds.post(SERVICE_URL, json=prefetched(history, None)))
    assert level(card) == "emergency" and card["indicator"] == "critical"
    assert "RF-CES-BLADDER" in rules(card)
    assert "Observation/obs-99 (Bladder function): dated in the future; not used" in not_used(card)


def test_a_later_normal_observation_supersedes_an_earlier_abnormal_one(cds):
    findings = exam({"bladder": None})
    history = [bladder("retention", 98, when=ago(3)), bladder("normal", 99, when=ago(1))]
    card = the_card(cds.post(SERVICE_URL, json=prefetched([*observations_for(findings), *history], None)))
    assert level(card) != "emergency"
    assert "RF-CES-BLADDER" not in rules(card)
    assert "Observation/obs-98 (Bladder function): superseded by a later record" in not_used(card)


# Policy SP-6 p2: unexplained weight loss with low back pain at 50 or over (the prefetched patient is
# born in 1970) is urgent; without a place of pain it is routine.
WEIGHT_LOSS_PAIN_LOCATION_UNKNOWN = exam(
    {"systemic.weight_loss": "present", "pain": {"severity": 5}}  # locations not recorded
)


def test_an_active_low_back_pain_condition_sets_pain_at_the_low_back(cds):
    call = prefetched(observations_for(WEIGHT_LOSS_PAIN_LOCATION_UNKNOWN), [condition(LOW_BACK_PAIN)])
    card = the_card(cds.post(SERVICE_URL, json=call))
    assert "RF-WEIGHT-LOSS-BACK-PAIN-50" in rules(card)
    assert level(card) == "urgent"
    assert {"reference": f"Condition/cond-{LOW_BACK_PAIN}-active"} in assessment(card)["basis"]


def test_a_low_back_pain_condition_alone_answers_no_red_flag_question(cds):
    """Policy SP-3 p3 (independent review, issue 23): a Condition says the pain is at the low back, not that
    it is not down both legs, so no red-flag question is answered: an incomplete assessment, as the same
    exam with nothing recorded would be, never a plain routine answer."""
    card = the_card(cds.post(SERVICE_URL, json=prefetched(None, [condition(LOW_BACK_PAIN)])))
    assert card["summary"].startswith("Incomplete assessment") and card["indicator"] == "warning"
    assert any(item.startswith("Where is the pain") for item in still_to_ask(card))


@pytest.mark.parametrize("status", ["inactive", "resolved", "remission"])
def test_an_inactive_low_back_pain_condition_is_not_used(cds, status):
    call = prefetched(observations_for(WEIGHT_LOSS_PAIN_LOCATION_UNKNOWN), [condition(LOW_BACK_PAIN, status)])
    card = the_card(cds.post(SERVICE_URL, json=call))
    assert "RF-WEIGHT-LOSS-BACK-PAIN-50" not in rules(card)
    assert f"Condition/cond-{LOW_BACK_PAIN}-{status} (Low back pain): not active; not used" in not_used(card)
    assert any(item.startswith("Where is the pain") for item in still_to_ask(card))


def test_groin_numbness_alone_is_an_emergency(cds):
    # Saddle-area numbness: 000 'When to Seek Professional Guidance' p2; 001 'Red Flags and When to Seek Medical Help'.
    card = the_card(cds.post(SERVICE_URL, json=prefetched([flag("triage|sensation-loss-groin", True, 0)], None)))
    assert level(card) == "emergency"
    assert card["indicator"] == "critical"
    assert "RF-CES-SADDLE" in rules(card)


@pytest.mark.parametrize(
    "reported",
    [{"foot": False}, {"foot": False, "lower-leg": True}],
    ids=["only-foot-normal", "foot-normal-lower-leg-numb"],
)
def test_areas_not_reported_stay_unknown(cds, reported):
    # Saddle-area numbness (000 'When to Seek Professional Guidance' p2) can only be ruled out once the groin,
    # inner thighs and genitals are known: areas never reported stay unknown, so the saddle flag stays open.
    findings = exam({"sensation": {"status": "reduced"}})  # saddle_numbness recorded absent, areas not recorded
    areas = [flag(f"triage|sensation-loss-{area}", value, 90 + i) for i, (area, value) in enumerate(reported.items())]
    card = the_card(cds.post(SERVICE_URL, json=prefetched([*observations_for(findings), *areas], None)))
    assert "(provisional)" in card["summary"]
    assert "RF-CES-SADDLE" not in rules(card)
    assert any(item.startswith("Where exactly is sensation reduced or lost?") for item in still_to_ask(card))


def test_a_bundle_with_a_next_link_is_noted_as_partly_read(cds):
    call = prefetched(observations_for(exam()), None)
    call["prefetch"]["observations"]["link"] = [
        {"relation": "self", "url": "https://fhir.example/Observation?patient=pat-1"},
        {"relation": "next", "url": "https://fhir.example/Observation?patient=pat-1&page=2"},
    ]
    card = the_card(cds.post(SERVICE_URL, json=call))
    [note] = [item for item in read_in_part(card) if item.startswith("observations (Bundle)")]
    assert "only the first page" in note
    assert not any(item.startswith("observations (Bundle)") for item in not_used(card))


# === 6. the mapping file ==========================================================================
MINIMAL_MAPPING = f"""\
version: test
systems:
  triage: {OWN_SYSTEM}
  sct: http://snomed.info/sct
prefetch:
  patient: Patient/{{{{context.patientId}}}}
  observations: Observation?patient={{{{context.patientId}}}}&category=exam
observations:
  triage|bladder-function:
    display: Bladder function
    finding: findings.bladder
    answers:
      triage|normal: normal
      triage|retention: retention
  triage|sensation-loss-groin:
    display: Reduced or absent sensation, groin
    finding: findings.sensation.areas
    member: groin
conditions:
  sct|279039007:
    display: Low back pain
    finding: findings.pain.locations
    member: low_back
"""


def test_the_minimal_mapping_loads(kb, tmp_path):
    path = tmp_path / "mapping.yaml"
    path.write_text(MINIMAL_MAPPING)
    mapping = load_mapping(kb, path)
    assert len(mapping.observations) == 2 and len(mapping.conditions) == 1


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("finding: findings.bladder", "finding: findings.bladdder", "unknown finding 'findings.bladdder'"),
        ("triage|retention: retention", "triage|retention: blocked", "'blocked' is not a value of findings.bladder"),
        ("member: groin", "member: knee", "member must be one of"),
        (
            "  triage|sensation-loss-groin:",
            "  triage|bladder-function:\n    display: again\n    finding: findings.bladder\n"
            "  triage|sensation-loss-groin:",
            "mapping.yaml: observations['triage|bladder-function']: duplicate key (lines 9 and 15)",
        ),
        ("sct|279039007:", "snomed|279039007:", "unknown system alias 'snomed'"),
        (
            "    member: low_back\n",
            "    member: low_back\n  sct|23056005:\n    display: Bladder\n    finding: findings.bladder\n"
            "    value: normal\n",
            "value must be an abnormal value of findings.bladder",
        ),
    ],
    ids=[
        "unknown-finding",
        "unknown-answer-value",
        "unknown-member",
        "duplicate-key",
        "unknown-alias",
        "normal-condition",
    ],
)
def test_invalid_mappings_are_refused_with_the_problem_named(kb, tmp_path, old, new, problem):
    assert old in MINIMAL_MAPPING
    path = tmp_path / "mapping.yaml"
    path.write_text(MINIMAL_MAPPING.replace(old, new, 1))
    with pytest.raises(MappingError) as raised:
        load_mapping(kb, path)
    assert problem in str(raised.value)


def _site_mapping(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    doc = yaml.safe_load(BUNDLED.read_text())
    change(doc)
    path = tmp_path / "site-mapping.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _add_local_saddle_code(doc: dict[str, Any]) -> None:
    doc["systems"]["local"] = "http://hospital.example/codes"
    doc["observations"]["local|SADDLE-ANAES"] = {"display": "Saddle anaesthesia", "finding": "findings.saddle_numbness"}


def test_a_site_mapping_with_a_local_code_works_end_to_end(tmp_path):
    client = cds_app(CDS_MAPPING_FILE=str(_site_mapping(tmp_path, _add_local_saddle_code))).test_client()
    local = observation("triage|saddle-numbness", {"valueBoolean": True}, index=0)
    local["code"] = {"coding": [{"system": "http://hospital.example/codes", "code": "SADDLE-ANAES"}]}
    card = the_card(client.post(SERVICE_URL, json=prefetched([local], None)))
    # Saddle-area numbness: 000 'When to Seek Professional Guidance' p2.
    assert level(card) == "emergency"
    assert "RF-CES-SADDLE" in rules(card)
    assert assessment(card)["basis"] == [{"reference": "Observation/obs-0"}]


def test_the_local_code_means_nothing_without_the_site_mapping(cds):
    local = observation("triage|saddle-numbness", {"valueBoolean": True}, index=0)
    local["code"] = {"coding": [{"system": "http://hospital.example/codes", "code": "SADDLE-ANAES"}]}
    card = the_card(cds.post(SERVICE_URL, json=prefetched([local], None)))
    assert level(card) != "emergency"
    assert any(item.startswith("Observation/obs-0") and "code not recognised" in item for item in not_used(card))


def test_a_site_mapping_changing_the_service_code_system_is_refused_at_start(tmp_path):
    def retarget(doc: dict[str, Any]) -> None:
        doc["systems"]["triage"] = "http://hospital.example/codes"

    with pytest.raises(MappingError, match=r"systems\.triage"):
        cds_app(CDS_MAPPING_FILE=str(_site_mapping(tmp_path, retarget)))


# === 7. CORS ======================================================================================
EHR_ORIGIN = "https://ehr.example.org"
CDS_HEADERS = "authorization, content-type"


@pytest.fixture(scope="module")
def cors_client() -> flask.testing.FlaskClient:
    """Auth enabled (no trusted issuer at all), one browser origin allowed."""
    return create_app({"TESTING": True, "CORS_ORIGINS": EHR_ORIGIN}).test_client()


@pytest.mark.parametrize("url", [SERVICE_URL, "/cds-services", FEEDBACK_URL])
def test_preflight_from_the_allowed_origin_needs_no_jwt(cors_client, url):
    response = preflight(cors_client, EHR_ORIGIN, url, CDS_HEADERS)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == EHR_ORIGIN
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert "authorization" in allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_the_allowed_origin_still_needs_a_jwt_for_the_call(cors_client):
    response = cors_client.post(SERVICE_URL, json=BASE_CALL, headers={"Origin": EHR_ORIGIN})
    issues(response, 401)
    assert response.headers["Access-Control-Allow-Origin"] == EHR_ORIGIN  # the browser may read the 401


def test_preflight_from_another_origin_gets_no_cors_headers(cors_client):
    response = preflight(cors_client, "https://evil.example.com", SERVICE_URL, CDS_HEADERS)
    assert "Access-Control-Allow-Origin" not in response.headers


def test_without_cors_origins_there_are_no_cors_headers(cds):
    for response in (
        preflight(cds, EHR_ORIGIN, SERVICE_URL, CDS_HEADERS),
        cds.get("/cds-services", headers={"Origin": EHR_ORIGIN}),
    ):
        assert not [name for name, _ in response.headers if name.lower().startswith("access-control-")]


# === 8. client JWTs end to end ====================================================================
PUBLIC = "https://cds.example.org"
ISS = "https://ehr.example.org/"
ES_KEY = make_es384_key("es-1")
RS_KEY = make_rs384_key("rs-1")


@pytest.fixture(scope="module")
def cds_jwt_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[flask.testing.FlaskClient]:
    with JwksServer() as server:
        server.publish("/jwks", {"keys": [ES_KEY.public_jwk(), RS_KEY.public_jwk()]})
        trust = tmp_path_factory.mktemp("trust") / "cds-trust.yaml"
        trust.write_text(yaml.safe_dump({"issuers": [{"iss": ISS, "jwks_url": server.url("/jwks")}]}))
        app = create_app({"TESTING": True, "CDS_TRUST_FILE": str(trust), "PUBLIC_BASE_URL": PUBLIC})
        yield app.test_client()


def bearer(key: SigningKey = ES_KEY, aud: str = PUBLIC + SERVICE_URL, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(key, iss=ISS, aud=aud, **kwargs)}"}


def assert_bare_401(response: Any) -> None:
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json() == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "login"}],
    }


def test_discovery_with_a_fresh_es384_token(cds_jwt_client):
    response = cds_jwt_client.get("/cds-services", headers=bearer(aud=PUBLIC + "/cds-services"))
    assert response.status_code == 200
    assert len(response.get_json()["services"]) == 2


@pytest.mark.parametrize("key", [ES_KEY, RS_KEY], ids=["ES384", "RS384"])
def test_service_call_with_a_fresh_token(cds_jwt_client, key):
    response = cds_jwt_client.post(SERVICE_URL, json=call_for(exam()), headers=bearer(key))
    card = the_card(response)
    assert card["source"]["url"] == PUBLIC + "/knowledge"  # links follow the public base URL


def test_feedback_with_a_fresh_token(cds_jwt_client):
    headers = bearer(aud=PUBLIC + FEEDBACK_URL)
    assert cds_jwt_client.post(FEEDBACK_URL, json=SPEC_FEEDBACK_ACCEPTED, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("url", "aud"),
    [
        (SERVICE_URL, PUBLIC + "/cds-services"),  # the discovery URL used for a service call
        ("/cds-services", PUBLIC + SERVICE_URL),
        (FEEDBACK_URL, PUBLIC + SERVICE_URL),
        (SERVICE_URL, "http://localhost" + SERVICE_URL),  # the Host header is not the public URL
    ],
    ids=["service-with-discovery-aud", "discovery-with-service-aud", "feedback-with-service-aud", "host-url"],
)
def test_a_token_for_another_endpoint_is_401(cds_jwt_client, url, aud):
    method = cds_jwt_client.get if url == "/cds-services" else cds_jwt_client.post
    body = SPEC_FEEDBACK_ACCEPTED if url == FEEDBACK_URL else call_for(exam())
    kwargs = {} if url == "/cds-services" else {"json": body}
    assert_bare_401(method(url, headers=bearer(aud=aud), **kwargs))


def test_no_token_is_401(cds_jwt_client):
    assert_bare_401(cds_jwt_client.post(SERVICE_URL, json=call_for(exam())))
    assert_bare_401(cds_jwt_client.get("/cds-services"))


def test_a_replayed_token_is_401(cds_jwt_client):
    headers = bearer()
    assert cds_jwt_client.post(SERVICE_URL, json=call_for(exam()), headers=headers).status_code == 200
    assert_bare_401(cds_jwt_client.post(SERVICE_URL, json=call_for(exam()), headers=headers))


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_an_unsigned_alg_none_token_is_401(cds_jwt_client):
    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": ISS, "aud": PUBLIC + SERVICE_URL, "iat": now, "exp": now + 300, "jti": "none-1"}
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': ES_KEY.kid})}.{_b64(claims)}."
    assert_bare_401(
        cds_jwt_client.post(SERVICE_URL, json=call_for(exam()), headers={"Authorization": f"Bearer {unsigned}"})
    )


def test_auth_is_checked_before_the_body(cds_jwt_client):
    assert_bare_401(cds_jwt_client.post(SERVICE_URL, data='{"hook": ', content_type="application/json"))
    assert_bare_401(cds_jwt_client.post(SERVICE_URL, json={"hook": "order-sign"}))
    assert_bare_401(cds_jwt_client.post("/cds-services/no-such-service", json={}))


def test_jwts_are_never_logged(cds_jwt_client, logs):
    good = bearer()
    wrong_aud = bearer(aud=PUBLIC + "/cds-services")
    assert cds_jwt_client.post(SERVICE_URL, json=call_for(exam()), headers=good).status_code == 200
    assert cds_jwt_client.post(SERVICE_URL, json=call_for(exam()), headers=good).status_code == 401
    assert cds_jwt_client.post(SERVICE_URL, json=call_for(exam()), headers=wrong_aud).status_code == 401
    assert [e["reason"] for e in events(logs, "cds_auth_rejected")] == ["replay", "audience"]
    text = all_logged(logs)
    for headers in (good, wrong_aud):
        token = headers["Authorization"].removeprefix("Bearer ")
        assert token not in text
        assert token.split(".")[2] not in text  # not even the signature


def test_an_internal_error_is_a_500_operation_outcome_never_a_lower_answer(monkeypatch):
    app = create_app({"TESTING": False, "CDS_AUTH_DISABLED": True})
    client = app.test_client()

    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("engine failure")

    monkeypatch.setattr("service.cds.services.evaluate", broken)
    response = client.post(SERVICE_URL, json=prefetched([bladder("retention", 0)], None))
    [issue] = issues(response, 500)
    assert issue["code"] == "exception"
    assert "cards" not in response.get_json()


@pytest.mark.parametrize("value", [[], {}, ["female"]])
def test_a_gender_or_status_of_the_wrong_type_is_read_as_unknown_not_a_500(cds, value):
    # A JSON array or object here raised TypeError (a 500): the sex stays unknown and the record is not used.
    call = prefetched([bladder("retention", 97, status=value)], None)
    call["prefetch"]["patient"]["gender"] = value
    card = the_card(cds.post(SERVICE_URL, json=call))
    assert "Observation/obs-97 (Bladder function): status (none); not used" in not_used(card)


# === 9. vital signs, SNOMED CT Conditions and age (issue 23) =======================================
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
FEVER_QUESTION = "Has the patient had a fever"
# Fever unknown, pain at the low back: a fever makes it urgent (RF-FEVER-BACK-PAIN, policy SP-6 p1).
BACK_PAIN_FEVER_UNKNOWN = exam({"systemic.fever": None, "pain.locations": ["low_back"], "pain.severity": 3})
VITAL_SIGNS = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]
}


def temperature(
    value: Any, unit: str = "Cel", index: int = 90, code: str = "8310-5", when: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A FHIR R4 vital-signs body temperature (LOINC code, UCUM unit), as an EHR records it."""
    quantity = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    obs = observation("triage|fever", {"valueQuantity": quantity}, index=index, when=when)
    obs["code"] = {"coding": [{"system": LOINC, "code": code}], "text": "Body temperature"}
    obs["category"] = [VITAL_SIGNS]
    obs.update(extra)
    return obs


def with_vitals(observations: list[dict[str, Any]], vitals: list[dict[str, Any]], **patient_extra: Any) -> dict:
    """A patient-view call with every prefetch key sent, vital signs under their own key."""
    return hook_call(
        {
            "patient": patient(**patient_extra),
            "observations": bundle(observations),
            "conditions": None,
            "vitals": bundle(vitals),
        }
    )


def fever_read(card: dict[str, Any]) -> str:
    """How the card's answer read fever: present (a fever rule fired), unknown (still asked) or absent."""
    if "RF-FEVER-BACK-PAIN" in rules(card):
        return "present"
    return "unknown" if any(q.startswith(FEVER_QUESTION) for q in still_to_ask(card)) else "absent"


def test_the_prefetch_templates_read_vital_signs_with_the_mapped_temperature_codes(cds):
    """Issue 23: vital signs have their own prefetch key (exam findings keep theirs, so a day of vital signs
    cannot push them off the first page), asking for the temperature codes the mapping reads."""
    for service in cds.get("/cds-services").get_json()["services"]:
        vitals = service["prefetch"]["vitals"]
        path, _, query = vitals.partition("?")
        params = dict(part.split("=", 1) for part in query.split("&"))
        assert path == "Observation"
        assert params["patient"] == "{{context.patientId}}"
        assert params["category"] == "vital-signs"
        assert {f"{LOINC}|{code}" for code in ("8310-5", "8331-1", "8328-7", "8333-7", "8332-9")} <= set(
            params["code"].split(",")
        )
        assert (params["_sort"], params["_count"]) == ("-date", "100")
        # CDS Hooks 2.0 prefetch templates: references, token equality, _sort and _count only.
        for template in service["prefetch"].values():
            names = {p.split("=", 1)[0] for p in template.partition("?")[2].split("&") if p}
            assert names <= {"patient", "category", "code", "_sort", "_count"}, template


@pytest.mark.parametrize(
    ("value", "unit", "code", "expected"),
    [
        (38.5, "Cel", "8310-5", "present"),
        (38.0, "Cel", "8310-5", "present"),  # at the threshold
        (37.2, "Cel", "8310-5", "absent"),
        (37.99, "Cel", "8310-5", "absent"),
        (101, "[degF]", "8310-5", "present"),
        (100.4, "[degF]", "8310-5", "present"),
        (99.5, "[degF]", "8310-5", "absent"),
        (38.6, "Cel", "8331-1", "present"),  # oral
        (38.6, "Cel", "8328-7", "present"),  # axillary
        (38.6, "Cel", "8333-7", "present"),  # tympanic membrane
        (38.6, "Cel", "8332-9", "present"),  # rectal
    ],
)
def test_a_body_temperature_at_or_above_38_c_is_fever_through_prefetch(cds, value, unit, code, expected):
    """Issue 23; findings.yaml's fever question (38 C or more) and policy SP-6 p1 (fever with low back pain is
    urgent, RF-FEVER-BACK-PAIN): a measured temperature at or above 38.0 C (100.4 F) is fever, below it is not."""
    call = with_vitals(observations_for(BACK_PAIN_FEVER_UNKNOWN), [temperature(value, unit, code=code)])
    card = the_card(cds.post(SERVICE_URL, json=call))
    assert fever_read(card) == expected
    assert level(card) == ("urgent" if expected == "present" else "self_care")
    assert {"reference": "Observation/obs-90"} in assessment(card)["basis"]


def test_a_temperature_in_the_exam_bundle_is_read_too(cds):
    """Policy SP-6 p1: a temperature the EHR returns with the exam Observations counts the same."""
    call = prefetched([*observations_for(BACK_PAIN_FEVER_UNKNOWN), temperature(38.5)], None)
    card = the_card(cds.post(SERVICE_URL, json=call))
    assert fever_read(card) == "present" and level(card) == "urgent"


@pytest.mark.parametrize(
    "change",
    [
        {"valueQuantity": {"value": 311.7, "unit": "K", "system": UCUM, "code": "K"}},
        {"valueQuantity": {"value": 38.5, "unit": "degrees C"}},  # no UCUM code
        {"valueQuantity": {"value": 38.5, "unit": "Cel", "system": "http://example.org/units", "code": "Cel"}},
        {"valueQuantity": {"unit": "Cel", "system": UCUM, "code": "Cel"}},  # no value
        {"valueQuantity": {"value": "38.5", "unit": "Cel", "system": UCUM, "code": "Cel"}},
        {"valueQuantity": {"value": 37.0, "comparator": "<", "unit": "Cel", "system": UCUM, "code": "Cel"}},
        {"valueQuantity": {"value": 39.0, "comparator": "<=", "unit": "Cel", "system": UCUM, "code": "Cel"}},
        {"valueQuantity": {"value": 38.5, "comparator": "ad", "unit": "Cel", "system": UCUM, "code": "Cel"}},
        {"valueQuantity": {"value": 37.5, "comparator": ">", "unit": "Cel", "system": UCUM, "code": "Cel"}},
        {"valueQuantity": {"value": 99.0, "comparator": ">=", "unit": "[degF]", "system": UCUM, "code": "[degF]"}},
        {"valueQuantity": {"value": 38.5, "comparator": "~", "unit": "Cel", "system": UCUM, "code": "Cel"}},
        {"valueQuantity": {"value": 38.5, "comparator": [">="], "unit": "Cel", "system": UCUM, "code": "Cel"}},
        {"valueBoolean": True},
    ],
    ids=[
        "kelvin",
        "no-code",
        "other-system",
        "no-value",
        "string-value",
        "less-than",
        "at-most-above-38",
        "sufficient-amount",
        "more-than-below-38",
        "at-least-below-100.4-F",
        "not-a-comparator",
        "comparator-list",
        "boolean",
    ],
)
def test_a_temperature_that_cannot_be_read_leaves_fever_unknown_and_is_named(cds, change):
    """Issue 23; policy SP-3 p1: an unreadable temperature is unknown, never absent: fever is still asked
    and the record is listed as not used. So is one whose comparator does not put it at or above the
    threshold: below (<), at most (<=), a sufficient amount (ad), or more than a value below 38 C."""
    reading = temperature(38.5)
    del reading["valueQuantity"]
    reading.update(change)
    card = the_card(cds.post(SERVICE_URL, json=with_vitals(observations_for(BACK_PAIN_FEVER_UNKNOWN), [reading])))
    assert fever_read(card) == "unknown"
    assert "(provisional)" in card["summary"]
    [note] = [item for item in not_used(card) if item.startswith("Observation/obs-90")]
    assert "not recognised" in note and "stays unknown" in note


@pytest.mark.parametrize(
    ("comparator", "value", "unit"),
    [(">=", 38.0, "Cel"), (">", 38.0, "Cel"), (">", 39.2, "Cel"), (">=", 100.4, "[degF]"), (">", 102, "[degF]")],
)
def test_a_temperature_at_least_38_c_by_its_comparator_is_fever(cds, comparator, value, unit):
    """Independent review, issue 23; findings.yaml's fever question (38 C or more) and policy SP-6 p1 (fever
    with low back pain is urgent, RF-FEVER-BACK-PAIN): a temperature recorded as at least (>=) or more than
    (>) a value at or above 38.0 C (100.4 F) is at least that, so fever is present (it was left unknown)."""
    reading = temperature(value, unit)
    reading["valueQuantity"]["comparator"] = comparator
    card = the_card(cds.post(SERVICE_URL, json=with_vitals(observations_for(BACK_PAIN_FEVER_UNKNOWN), [reading])))
    assert fever_read(card) == "present" and level(card) == "urgent"
    assert {"reference": "Observation/obs-90"} in assessment(card)["basis"]
    assert not [item for item in not_used(card) if item.startswith("Observation/obs-90")]


@pytest.mark.parametrize(("value", "unit"), [(38.5, "[degF]"), (3.85, "Cel"), (385, "Cel"), (24.0, "Cel")])
def test_a_temperature_no_patient_could_have_leaves_fever_unknown_and_is_named(cds, value, unit):
    """Independent review, issue 23; policy SP-3 p1: 38.5 entered as [degF] or 3.85 for 38.5 would read as
    'no fever' against the threshold. A value outside a possible body temperature is a recording error:
    fever stays unknown and asked, never absent, and the record is named."""
    call = with_vitals(observations_for(BACK_PAIN_FEVER_UNKNOWN), [temperature(value, unit)])
    card = the_card(cds.post(SERVICE_URL, json=call))
    assert fever_read(card) == "unknown"
    assert "(provisional)" in card["summary"]
    [note] = [item for item in not_used(card) if item.startswith("Observation/obs-90")]
    assert "not a possible reading" in note and "stays unknown" in note


def test_a_temperature_recorded_without_a_value_leaves_fever_unknown(cds):
    """Policy SP-3 p1: dataAbsentReason leaves fever unknown and asked."""
    reading = temperature(38.5, dataAbsentReason=coded("unknown"))
    del reading["valueQuantity"]
    card = the_card(cds.post(SERVICE_URL, json=with_vitals(observations_for(BACK_PAIN_FEVER_UNKNOWN), [reading])))
    assert fever_read(card) == "unknown"
    assert any(item.startswith("Observation/obs-90 (Body temperature)") for item in not_used(card))


@pytest.mark.parametrize("order", ["fever-first", "fever-last"])
def test_a_later_normal_temperature_never_hides_a_fever(cds, order):
    """Issue 23; policy SP-3 (a record can never lower the level): a fever measured within the observation age
    limit counts even when a normal temperature, or a 'no fever' answer, was recorded after it."""
    readings = [temperature(38.9, index=90, when=ago(2)), temperature(36.8, index=91, when=ago(0.1))]
    answer = observation("triage|fever", {"valueBoolean": False}, index=92, when=ago(0.05))
    findings = exam({"systemic.fever": None, "pain.locations": ["low_back"], "pain.severity": 3})
    vitals = readings if order == "fever-first" else readings[::-1]
    card = the_card(cds.post(SERVICE_URL, json=with_vitals([*observations_for(findings), answer], vitals)))
    assert fever_read(card) == "present" and level(card) == "urgent"
    assert {"reference": "Observation/obs-90"} in assessment(card)["basis"]
    # The 'no fever' answer conflicts with the fever and is set aside; the normal temperature before it is
    # superseded by that answer, or (with the readings reversed) set aside the same way.
    assert any(i.startswith("Observation/obs-92") and "more abnormal record" in i for i in not_used(card))
    assert any(i.startswith("Observation/obs-91") for i in not_used(card))


def test_a_fever_older_than_the_age_limit_is_not_used(cds):
    """The observation age limit (90 days) applies to temperatures like any record; fever stays unknown."""
    card = the_card(
        cds.post(
            SERVICE_URL, json=with_vitals(observations_for(BACK_PAIN_FEVER_UNKNOWN), [temperature(39, when=ago(91))])
        )
    )
    assert fever_read(card) == "unknown"


def test_fever_from_a_temperature_through_the_fhir_read(fhir_stub):
    """Issue 23; policy SP-6 p1: the FHIR read asks for vital signs with the discovery query, and a body
    temperature of 38.5 Cel there is fever (urgent with low back pain); 37.2 Cel is no fever."""
    client = stub_client(fhir_stub)
    queries = discovery_queries(client, PATIENT_ID)
    fhir_stub.add(queries["patient"], patient())
    fhir_stub.add(queries["observations"], bundle(observations_for(BACK_PAIN_FEVER_UNKNOWN)))
    fhir_stub.add(queries["conditions"], bundle([]))
    fhir_stub.add(queries["vitals"], bundle([temperature(38.5)]))
    card = the_card(client.post(SERVICE_URL, json={**hook_call(), **authorization(fhir_stub)}))
    assert fever_read(card) == "present" and level(card) == "urgent"
    assert queries["vitals"] in fetched(fhir_stub)
    assert "category=vital-signs" in queries["vitals"]
    fhir_stub.add(queries["vitals"], bundle([temperature(37.2)]))
    card = the_card(client.post(SERVICE_URL, json={**hook_call(), **authorization(fhir_stub)}))
    assert fever_read(card) == "absent" and level(card) == "self_care"


def test_vital_signs_not_sent_and_no_fhir_server_leave_the_rest_of_the_call_working(cds):
    """An EHR that sends the exam keys only (and no fhirServer) still gets its card; fever stays unknown."""
    call = prefetched(observations_for(BACK_PAIN_FEVER_UNKNOWN), None)
    del call["prefetch"]["vitals"]
    card = the_card(cds.post(SERVICE_URL, json=call))
    assert fever_read(card) == "unknown"
    assert not any(item.startswith("vitals") for item in not_used(card))


def test_vital_signs_that_cannot_be_read_are_named_and_fever_stays_unknown(fhir_stub):
    """Policy SP-3 p1: a failed read of vital signs is reported on the card, never read as no fever."""
    queries = discovery_queries(cds_app().test_client(), PATIENT_ID)
    _fail_500(fhir_stub, queries["vitals"])
    call = {**prefetched(observations_for(BACK_PAIN_FEVER_UNKNOWN), None), **authorization(fhir_stub)}
    del call["prefetch"]["vitals"]
    card = the_card(stub_client(fhir_stub).post(SERVICE_URL, json=call))
    assert fever_read(card) == "unknown"
    assert any(item.startswith("vitals") and "could not be read" in item for item in not_used(card))


def _born_years_ago(years: int, days_later: int = 0) -> str:
    """The birth date of someone `years` old today (on 29 February: born on the 28th), moved `days_later`."""
    today = datetime.now(UTC).date()
    try:
        born = today.replace(year=today.year - years)
    except ValueError:  # 29 February, and that year had none
        born = today.replace(year=today.year - years, day=28)
    return (born + timedelta(days=days_later)).isoformat()


# Policy SP-6 p2: unexplained weight loss with low back pain at 50 or over is urgent (RF-WEIGHT-LOSS-BACK-PAIN-50).
WEIGHT_LOSS_BACK_PAIN = exam({"systemic.weight_loss": "present", "pain.locations": ["low_back"], "pain.severity": 3})


@pytest.mark.parametrize(("born", "aged_50"), [(_born_years_ago(50), True), (_born_years_ago(50, 1), False)])
def test_the_patients_birth_date_gives_the_age_the_rules_see_through_prefetch(cds, born, aged_50):
    """Policy SP-6 p2 and SP-8: the age comes from Patient.birthDate, to the day (50 today; 49 until tomorrow)."""
    call = prefetched(observations_for(WEIGHT_LOSS_BACK_PAIN), None)
    call["prefetch"]["patient"] = patient(birthDate=born)
    card = the_card(cds.post(SERVICE_URL, json=call))
    assert ("RF-WEIGHT-LOSS-BACK-PAIN-50" in rules(card)) is aged_50
    assert "(provisional)" not in card["summary"]  # the age is known either way


@pytest.mark.parametrize(("born", "aged_50"), [(_born_years_ago(50), True), (_born_years_ago(50, 1), False)])
def test_the_patients_birth_date_gives_the_age_the_rules_see_through_the_fhir_read(fhir_stub, born, aged_50):
    """Policy SP-6 p2 and SP-8: a Patient read from the FHIR server gives the age the same way."""
    queries = serve(fhir_stub, PATIENT_ID, observations_for(WEIGHT_LOSS_BACK_PAIN), [])
    fhir_stub.add(queries["patient"], patient(birthDate=born))
    call = {**hook_call({"conditions": None, "vitals": None}), **authorization(fhir_stub)}
    card = the_card(stub_client(fhir_stub).post(SERVICE_URL, json=call))
    assert fetched(fhir_stub) == [queries["patient"], queries["observations"]]
    assert ("RF-WEIGHT-LOSS-BACK-PAIN-50" in rules(card)) is aged_50


# Policy SP-5 p3 (H-01, H-04): a sudden failed raise with severe low back pain is an emergency at 65 or over,
# urgent below (RF-OLDER-SUDDEN-SEVERE-BACK-PAIN, tests/clinical_cases.py "... at 65" and "... at 64").
SUDDEN_SEVERE_BACK_PAIN = exam(
    {"slr.result": "unable", "history.onset": "sudden", "pain.locations": ["low_back"], "pain.severity": 7}
)
# Policy SP-8 p2 (H-04): a limping child with fever is an emergency (RF-CHILD-FEVER-HIP), outside intended use.
LIMPING_WITH_FEVER = exam({"systemic.fever": "present", "function.walking_affected": "present"})
AGE_QUESTION = "How old is the patient, in years?"


def _birth_date_call(findings: dict[str, Any], born: Any) -> dict[str, Any]:
    call = prefetched(observations_for(findings), None)
    call["prefetch"]["patient"] = patient(birthDate=born)
    return call


def _month_ago(years: int) -> str:
    """The month before this one, `years` earlier (YYYY-MM): everyone born in it is `years` old today."""
    last_month = datetime.now(UTC).date().replace(day=1) - timedelta(days=1)
    return f"{last_month.year - years}-{last_month.month:02d}"


def _date_note(card: dict[str, Any], *, used: bool = True) -> str:
    """The card's note on the birthDate: under "read in part" when it gave the age, else "not used"."""
    [item] = [item for item in (read_in_part if used else not_used)(card) if "Date of birth" in item]
    assert not [item for item in (not_used if used else read_in_part)(card) if "Date of birth" in item]
    return item


@pytest.mark.parametrize(
    "born", [str(datetime.now(UTC).year - 76), f"{datetime.now(UTC).year - 76}-04", _month_ago(65)]
)
def test_a_birth_year_or_month_that_puts_every_possible_age_at_65_or_over_gives_the_emergency(cds, born):
    """Independent review, issue 23; policy SP-5 p3 and SP-8: born 76 years ago this year (75 or 76 whatever
    the day), or in the month before this one 65 years ago (65 whatever the day), a sudden failed raise with
    severe low back pain is the emergency a full birthDate gives (RF-OLDER-SUDDEN-SEVERE-BACK-PAIN); the
    card says the birth date was partial and which ages it allows."""
    card = the_card(cds.post(SERVICE_URL, json=_birth_date_call(SUDDEN_SEVERE_BACK_PAIN, born)))
    assert level(card) == "emergency" and "RF-OLDER-SUDDEN-SEVERE-BACK-PAIN" in rules(card)
    assert AGE_QUESTION not in still_to_ask(card)
    note = _date_note(card)
    assert "gives only the year" in note and ("no age threshold" in note or "whatever the day" in note)
    assert born[:4] not in note  # the ages, never the birth date itself


@pytest.mark.parametrize("form", ["year", "year-month"])
def test_a_child_known_by_birth_year_or_month_gets_what_a_full_birth_date_gives(cds, form):
    """Independent review, issue 23; policy SP-8 p2: a limping child with fever is an emergency
    (RF-CHILD-FEVER-HIP) outside the intended use; a child born 8 years ago (7 or 8 whatever the day) is
    a child by birth year alone, as by the full date."""
    year = datetime.now(UTC).year - 8
    full = the_card(cds.post(SERVICE_URL, json=_birth_date_call(LIMPING_WITH_FEVER, f"{year}-02-01")))
    born = str(year) if form == "year" else f"{year}-02"
    card = the_card(cds.post(SERVICE_URL, json=_birth_date_call(LIMPING_WITH_FEVER, born)))
    assert level(card) == level(full) == "emergency"
    assert rules(card) == rules(full) and "RF-CHILD-FEVER-HIP" in rules(card)
    assert card["summary"] == full["summary"] and "(under 16, outside intended use)" in card["summary"]
    assert card["indicator"] == full["indicator"]
    assert "birthDate gives only the year" in _date_note(card)


def _straddling(years: int, form: str) -> str:
    """A birth year (or this month's year-month) `years` ago: `years` - 1 or `years` depending on the day. None
    straddles on 31 December (or on a month's last day): every such birthday has passed, so the test is skipped
    then."""
    today = datetime.now(UTC).date()
    if form == "year":
        if (today.month, today.day) == (12, 31):
            pytest.skip("on 31 December a birth year gives an exact age")
        return str(today.year - years)
    if (today + timedelta(days=1)).day == 1:
        pytest.skip("on a month's last day a birth year-month gives an exact age")
    return f"{today.year - years}-{today.month:02d}"


def _more_urgent_at(card: dict[str, Any], born: str, younger: int, age: int, logs: Any) -> None:
    """The card answers at `age`, not provisional on the age, and says so under "read in part", with the ages
    only: neither the note nor the birth date is logged."""
    assert AGE_QUESTION not in still_to_ask(card)
    note = _date_note(card)
    given = "the year" if len(born) == 4 else "the year and month"
    assert f"birthDate gives only {given}; the age is {younger} or {younger + 1}" in note
    assert f"the more urgent answer (at {age}) is given; the exact age could make it less urgent" in note
    assert born[:4] not in note
    logged = all_logged(logs)
    assert "more urgent answer" not in logged and f'"{born}"' not in logged and f"{younger} or" not in logged


@pytest.mark.parametrize("form", ["year", "year-month"])
def test_a_birth_date_whose_ages_straddle_65_gives_the_emergency_of_65(cds, form, logs):
    """Independent review, issue 23; policy SP-5 p3 and SP-8: born 65 years ago this year (or this month), the
    patient is 64 or 65 depending on the day, either side of the 65 of RF-OLDER-SUDDEN-SEVERE-BACK-PAIN. A
    sudden failed raise with severe low back pain is an emergency at 65 and urgent at 64: the more urgent
    answer is given, at 65, and the card says the exact age could make it less urgent (it was urgent,
    provisional, with the age asked)."""
    born = _straddling(65, form)
    card = the_card(cds.post(SERVICE_URL, json=_birth_date_call(SUDDEN_SEVERE_BACK_PAIN, born)))
    assert level(card) == "emergency" and "RF-OLDER-SUDDEN-SEVERE-BACK-PAIN" in rules(card)
    _more_urgent_at(card, born, 64, 65, logs)


@pytest.mark.parametrize("form", ["year", "year-month"])
def test_a_birth_date_whose_ages_straddle_50_gives_the_urgent_answer_of_50(cds, form, logs):
    """Independent review, issue 23; policy SP-6 p2: unexplained weight loss with low back pain is urgent at 50
    or over (RF-WEIGHT-LOSS-BACK-PAIN-50), routine below. Born 50 years ago this year (or this month), 49 or
    50: the urgent answer at 50 is given (it was routine)."""
    born = _straddling(50, form)
    card = the_card(cds.post(SERVICE_URL, json=_birth_date_call(WEIGHT_LOSS_BACK_PAIN, born)))
    assert level(card) == "urgent" and "RF-WEIGHT-LOSS-BACK-PAIN-50" in rules(card)
    _more_urgent_at(card, born, 49, 50, logs)


@pytest.mark.parametrize("form", ["year", "year-month"])
def test_a_birth_date_whose_ages_straddle_16_gives_the_childs_emergency_of_15(cds, form, logs):
    """Independent review, issue 23; policy SP-8 p2: a limping child with fever is an emergency
    (RF-CHILD-FEVER-HIP), outside the intended use. Born 16 years ago this year (or this month), 15 or 16: the
    emergency at 15 is given, with the out-of-scope card (it was routine)."""
    born = _straddling(16, form)
    card = the_card(cds.post(SERVICE_URL, json=_birth_date_call(LIMPING_WITH_FEVER, born)))
    assert level(card) == "emergency" and "RF-CHILD-FEVER-HIP" in rules(card)
    assert "(under 16, outside intended use)" in card["summary"]
    _more_urgent_at(card, born, 15, 15, logs)


@pytest.mark.parametrize("form", ["year", "year-month"])
def test_a_birth_date_whose_ages_straddle_a_threshold_that_changes_no_level_leaves_the_age_asked(cds, form, logs):
    """Independent review, issue 23; policy SP-3 p1, SP-5 p3 and SP-6: born 50 years ago this year (or this
    month), 49 or 50. A sudden failed raise with severe low back pain is urgent at 49 and at 50, so no age
    gives a more urgent answer: the age stays unknown and asked for (65 would make it an emergency), the
    answer provisional, and the card says why. Nothing about the patient is logged."""
    born = _straddling(50, form)
    card = the_card(cds.post(SERVICE_URL, json=_birth_date_call(SUDDEN_SEVERE_BACK_PAIN, born)))
    assert level(card) == "urgent" and "RF-OLDER-SUDDEN-SEVERE-BACK-PAIN" not in rules(card)
    assert "(provisional)" in card["summary"] and AGE_QUESTION in still_to_ask(card)
    note = _date_note(card, used=False)
    assert "between 49 and 50" in note and "either side of 50" in note and "the age stays unknown" in note
    assert "between 49 and 50" not in all_logged(logs) and f'"{born}"' not in all_logged(logs)


# Deterministic: extract() on a fixed day, 6 December 2026, at the edges of the calendar, the knowledge's
# thresholds (16, 18, 45, 50, 65 and the intended population's 16) and the schema's 0 to 130.
DAY = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("born", "age", "says"),
    [
        ("1950", 75, "gives only the year; age taken as 75 to 76, which no age threshold of the rules separates"),
        ("1950-04", 76, "gives only the year and month; age 76 whatever the day"),
        ("1962", 63, "age taken as 63 to 64"),
        ("1961", None, "gives only the year; the age is between 64 and 65, either side of 65"),
        ("1961-11", 65, "age 65 whatever the day"),
        ("1961-12", None, "gives only the year and month; the age is between 64 and 65, either side of 65"),
        ("1976-12", None, "between 49 and 50, either side of 50"),
        ("1981", None, "between 44 and 45, either side of 45"),
        ("2008", None, "between 17 and 18, either side of 18"),
        ("2010", None, "between 15 and 16, either side of 16"),
        ("2018", 7, "age taken as 7 to 8"),
        ("2026", 0, "age 0 whatever the day"),  # born this year: by today, never later
        ("2026-12", 0, "age 0 whatever the day"),
        ("1896", 129, "age taken as 129 to 130"),
        ("1895", None, "outside 0 to 130"),  # 130 or 131: never coerced to 130
        ("1895-01-01", None, "outside 0 to 130"),
        ("2027", None, "outside 0 to 130"),  # in the future, as a full date in the future
        ("2026-12-07", None, "outside 0 to 130"),
        ("1950-13", None, "not a date"),
        ("1950-02-30", None, "not a date"),
        ("19500", None, "not a date"),
        (1950, None, "not a date"),
        ("1950-03-01", 76, None),  # a full date: the age, and no note
    ],
)
def test_the_age_a_birth_date_gives_on_a_fixed_day(kb, born, age, says):
    """Independent review, issue 23; policy SP-3 p1 and SP-8: a partial birthDate gives an age only where no
    threshold of the knowledge (every patient.age condition and the intended population's minimum age) falls
    between its youngest and oldest possible age; one outside the schema's 0 to 130 is never coerced."""
    data = Gathered(patient=patient(birthDate=born))
    found = extract(load_mapping(kb), data, patient_id=PATIENT_ID, now=DAY, max_age=timedelta(days=90))
    assert found.request.get("patient", {}).get("age") == age
    reasons = [n.reason for n in found.notes if n.label == "Date of birth"]
    assert [says in reason for reason in reasons] == ([] if says is None else [True]), reasons


@pytest.mark.parametrize(
    ("born", "ages"),
    [("1961", (64, 65)), ("1961-12", (64, 65)), ("1976-12", (49, 50)), ("2010", (15, 16)), ("1950", None)],
)
def test_a_birth_date_whose_ages_straddle_a_threshold_carries_the_ages_to_evaluate(kb, born, ages):
    """Independent review, issue 23; policy SP-3 p1 and SP-8: the extraction leaves a straddling age unknown
    and carries one age for each side of the threshold, for the service to evaluate."""
    data = Gathered(patient=patient(birthDate=born))
    found = extract(load_mapping(kb), data, patient_id=PATIENT_ID, now=DAY, max_age=timedelta(days=90))
    assert ("age" in found.request.get("patient", {})) is (ages is None)
    assert (found.straddle.ages if found.straddle else None) == ages
    if ages is not None:  # the service's choice: the age set, the note turned "read in part", ages only
        chosen = at_age(found, ages[1])
        assert chosen.request["patient"]["age"] == ages[1] and chosen.straddle is None
        [note] = [n for n in chosen.notes if n.label == "Date of birth"]
        assert note.used and f"the age is {ages[0]} or {ages[1]}" in note.reason and born[:4] not in note.reason
        assert "age" not in found.request.get("patient", {})  # the extraction itself is unchanged


def test_a_partial_birth_date_never_spans_more_than_one_threshold(kb):
    """A year or a year-month allows at most two ages, a year apart, so at most one threshold falls between
    them and the youngest and the oldest age cover every side (on every day of a leap year)."""
    mapping, start = load_mapping(kb), datetime(2028, 1, 1, 9, tzinfo=UTC)
    dates = [*(str(2028 - n) for n in (15, 16, 17, 18, 45, 50, 65, 66)), *(f"2012-{m:02d}" for m in range(1, 13))]
    straddles = 0
    for now in (start + timedelta(days=d) for d in range(366)):
        for born in dates:
            found = extract(
                mapping,
                Gathered(patient=patient(birthDate=born)),
                patient_id=PATIENT_ID,
                now=now,
                max_age=timedelta(days=90),
            )
            if found.straddle:
                straddles += 1
                assert found.straddle.ages == (found.straddle.youngest, found.straddle.oldest)
                assert found.straddle.oldest == found.straddle.youngest + 1
    assert straddles > 366


def test_on_31_december_a_birth_year_gives_the_exact_age(kb):
    """Policy SP-5 p3 and SP-8: on the last day of the year everyone born in 1961 is 65."""
    data = Gathered(patient=patient(birthDate="1961"))
    found = extract(load_mapping(kb), data, patient_id=PATIENT_ID, now=DAY.replace(day=31), max_age=timedelta(days=90))
    assert found.request["patient"]["age"] == 65


@pytest.mark.parametrize(
    ("code", "changes", "rule"),
    [
        ("267064002", {"bladder": None}, "RF-CES-BLADDER"),  # retention of urine
        ("165232002", {"bladder": None}, "RF-CES-BLADDER"),  # urinary incontinence
        ("72042002", {"bowel": None}, "RF-CES-BOWEL"),  # incontinence of feces
    ],
    ids=["urinary-retention", "urinary-incontinence", "faecal-incontinence"],
)
def test_an_active_snomed_red_flag_condition_is_an_emergency(cds, code, changes, rule):
    """000 'When to Seek Professional Guidance' p2: bladder or bowel change is an emergency, recorded as an
    active SNOMED CT Condition as much as an exam Observation."""
    card = the_card(cds.post(SERVICE_URL, json=prefetched(observations_for(exam(changes)), [condition(code)])))
    assert level(card) == "emergency" and rule in rules(card)
    assert {"reference": f"Condition/cond-{code}-active"} in assessment(card)["basis"]


def test_an_active_snomed_fever_condition_is_fever(cds):
    """Policy SP-6 p1: an active Fever Condition (SNOMED CT 386661006) with low back pain is urgent."""
    call = prefetched(observations_for(BACK_PAIN_FEVER_UNKNOWN), [condition("386661006")])
    card = the_card(cds.post(SERVICE_URL, json=call))
    assert fever_read(card) == "present" and level(card) == "urgent"


THRESHOLD_MAPPING = MINIMAL_MAPPING.replace(
    "conditions:\n",
    """\
  loinc|8310-5:
    display: Body temperature
    finding: findings.systemic.fever
    threshold: {Cel: 38.0, '[degF]': 100.4}
conditions:
""",
)


def test_a_mapping_with_a_quantity_threshold_loads(kb, tmp_path):
    path = tmp_path / "mapping.yaml"
    path.write_text(THRESHOLD_MAPPING.replace("  sct: http", "  loinc: http://loinc.org\n  sct: http"))
    mapping = load_mapping(kb, path)
    entry = mapping.observations[("http://loinc.org", "8310-5")]
    assert entry.threshold == {"Cel": 38.0, "[degF]": 100.4}
    assert (
        "category=vital-signs" in mapping.prefetch["vitals"] and "http://loinc.org|8310-5" in mapping.prefetch["vitals"]
    )


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("finding: findings.systemic.fever", "finding: findings.bladder", "threshold is only for yes/no findings"),
        ("{Cel: 38.0, '[degF]': 100.4}", "{}", "threshold needs at least one UCUM unit"),
        ("{Cel: 38.0, '[degF]': 100.4}", "{Cel: hot}", "must be a number"),
        ("{Cel: 38.0, '[degF]': 100.4}", "{Cel: .nan}", "threshold for 'Cel' must be a finite number"),
    ],
    ids=["not-tri", "empty", "not-a-number", "nan"],
)
def test_invalid_thresholds_are_refused_at_start(kb, tmp_path, old, new, problem):
    text = THRESHOLD_MAPPING.replace("  sct: http", "  loinc: http://loinc.org\n  sct: http")
    assert old in text
    path = tmp_path / "mapping.yaml"
    path.write_text(text.replace(old, new))
    with pytest.raises(MappingError) as raised:
        load_mapping(kb, path)
    assert problem in str(raised.value)


def test_the_readme_mapping_table_matches_the_bundled_mapping(kb):
    """docs/ehr-integration.md "Mapping local codes": the table lists every LOINC and SNOMED CT code the
    bundled mapping reads (and no other), and the count of the service's own codes is the mapping's."""
    readme = (Path(__file__).resolve().parents[1] / "docs" / "ehr-integration.md").read_text(encoding="utf-8")
    mapping = load_mapping(kb)
    names = {"LOINC": "http://loinc.org", "SNOMED CT": SCT}
    rows = re.findall(r"^\| `([0-9-]+)` [^|]+\| (LOINC|SNOMED CT) \| (Observation|Condition)", readme, re.M)
    shown = {(names[system], code, kind) for code, system, kind in rows}
    standard = {(s, c, "Observation") for s, c in mapping.observations if s != mapping.own_system}
    standard |= {(s, c, "Condition") for s, c in mapping.conditions if s != mapping.own_system}
    assert shown == standard
    own = sum(1 for s, _ in mapping.observations if s == mapping.own_system)
    assert f"own code system ({own} codes" in " ".join(readme.split())


def test_the_age_thresholds_are_read_from_the_knowledge(kb):
    """Policy SP-8: the thresholds are every patient.age condition of the rules and conflicts (findings.yaml's
    child, under_18, aged_50_or_over, aged_65_or_over and CA-HIP-OSTEOARTHRITIS-AGE's 45) and the intended population's
    minimum (catalog.yaml scope), within the age finding's 0 to 130; none is written in the code."""
    assert read_ages(kb) == Ages(0, 130, (16, 18, 45, 50, 65))
    extra = dataclasses.replace(kb.rules[0], when=Atom(AGE, "below", 40))
    changed = dataclasses.replace(kb, rules=(*kb.rules, extra), scope=dataclasses.replace(kb.scope, min_age=21))
    assert read_ages(changed) == Ages(0, 130, (16, 18, 21, 40, 45, 50, 65))
