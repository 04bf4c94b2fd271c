"""Every core clinical scenario sent as FHIR through CDS Hooks: same answer as /v1/triage, valid cards.

The scenarios and the source sections they follow are those of tests/test_clinical_rules.py.
Card rules follow CDS Hooks 2.0.1 "Card Attributes" and "Use of JSON"; every FHIR resource the
service emits must parse with the R4B models of fhir.resources.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from service import create_app
from service.cds.fhir_out import EXT_CITATION, EXT_LEVEL, EXT_RULE, OWN_SYSTEM
from tests.clinical_cases import CASES
from tests.fhir_cases import SERVICE_URL, assessment, call_for, patient, walk
from tests.scenarios import exam

INDICATORS = {"emergency": "critical", "urgent": "warning", "routine": "info", "self_care": "info"}


@pytest.fixture(scope="module")
def cds_client():
    return create_app({"TESTING": True, "CDS_AUTH_DISABLED": True, "API_OPEN": True}).test_client()


def _age(born: str) -> int:
    birth, today = date.fromisoformat(born), datetime.now(UTC).date()
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


# The patient of every CDS Hooks call (tests/fhir_cases.py), as the /v1/triage body states it.
PATIENT = {"age": _age(patient()["birthDate"]), "sex": "female"}


@pytest.fixture(scope="module")
def answers(cds_client) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Per scenario: (the /v1/triage answer, the CDS Hooks answer) for the same findings and patient."""
    out = {}
    for case in CASES:
        findings = exam(case.changes)
        direct = cds_client.post("/v1/triage", json={"findings": findings, "patient": PATIENT})
        hooked = cds_client.post(SERVICE_URL, json=call_for(findings))
        assert direct.status_code == 200, case.name
        assert hooked.status_code == 200, (case.name, hooked.get_json())
        out[case.name] = (direct.get_json(), hooked.get_json())
    return out


def _citations(result: dict[str, Any]) -> set[tuple]:
    groups = [result["triage"]["citations"]]
    groups += [item["citations"] for key in ("causes", "referrals", "advice") for item in result[key]]
    return {(c["source"], c["section"], c["paragraph"], c["start"], c["end"], c["sha256"]) for g in groups for c in g}


def _extension_citations(assessment: dict[str, Any]) -> set[tuple]:
    out = set()
    for ext in assessment["extension"]:
        if ext["url"] == EXT_CITATION:
            parts = {p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in ext["extension"]}
            out.add(tuple(parts[k] for k in ("source", "section", "paragraph", "start", "end", "sha256")))
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_fhir_and_json_give_the_same_level_causes_and_citations(case, answers):
    direct, hooked = answers[case.name]
    [card] = hooked["cards"]
    recorded = assessment(card)
    level = next(e["valueCoding"]["code"] for e in recorded["extension"] if e["url"] == EXT_LEVEL)
    assert level == f"level-{direct['triage']['level'].replace('_', '-')}"
    assert direct["triage"]["level"] == case.level  # the scenario itself still holds
    predicted = [p["outcome"]["coding"][0]["code"] for p in recorded.get("prediction", [])]
    assert predicted == [f"cause-{c['id'].replace('_', '-')}" for c in direct["causes"]]
    assert _extension_citations(recorded) == _citations(direct)
    rules = [e["valueString"] for e in recorded["extension"] if e["url"] == EXT_RULE]
    assert rules == [t["rule"] for t in direct["trace"]]
    assert recorded["status"] == ("preliminary" if direct["triage"]["provisional"] else "final")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_card_keeps_the_cds_hooks_card_rules(case, answers):
    direct, hooked = answers[case.name]
    [card] = hooked["cards"]
    assert len(card["summary"]) < 140
    assert card["indicator"] == INDICATORS[direct["triage"]["level"]]
    assert card["source"]["label"]
    assert "url" not in card["source"]  # no public base URL configured in this app
    assert len(card["uuid"]) == 36
    assert card["suggestions"] and card["selectionBehavior"] in ("any", "at-most-one")
    assert all(s["uuid"] and s["label"] and s["actions"] for s in card["suggestions"])
    assert all(a["description"] and a["type"] == "create" for s in card["suggestions"] for a in s["actions"])
    assert card["overrideReasons"] and all(r["display"] and r["system"] == OWN_SYSTEM for r in card["overrideReasons"])
    assert all(link["url"].startswith("http://localhost/") and link["type"] == "absolute" for link in card["links"])
    for path, value in walk(hooked):
        assert value is not None and value != "" and value != {}, path
        assert value != [] or path == "$.cards", path


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_card_detail_carries_causes_referrals_questions_and_sources(case, answers):
    direct, hooked = answers[case.name]
    detail = hooked["cards"][0]["detail"]
    for cause in direct["causes"]:
        assert cause["name"] in detail
    for missing in direct["missing"]:
        assert missing["question"] in detail
    for advice in direct["advice"]:
        assert advice["text"] in detail
    headings = {c["heading"] for c in direct["triage"]["citations"] if c["heading"]}
    assert all(h in detail for h in headings)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_emitted_fhir_resource_parses_as_r4b(case, answers):
    _, hooked = answers[case.name]
    resources = [a["resource"] for s in hooked["cards"][0]["suggestions"] for a in s["actions"]]
    assert {r["resourceType"] for r in resources} >= {"RiskAssessment"}
    for resource in resources:
        model = get_fhir_model_class(resource["resourceType"])
        parsed = model.model_validate(resource)
        assert parsed.model_dump(exclude_none=True)["resourceType"] == resource["resourceType"]


def test_referrals_become_service_request_suggestions(answers):
    _, hooked = answers["bladder retention"]  # 000 'When to Seek Professional Guidance' p2
    requests = [
        a["resource"]
        for s in hooked["cards"][0]["suggestions"]
        for a in s["actions"]
        if a["resource"]["resourceType"] == "ServiceRequest"
    ]
    assert any(
        r["priority"] == "stat" and r["code"]["coding"][0]["code"] == "referral-emergency-department" for r in requests
    )
    assert all(r["status"] == "draft" and r["intent"] == "proposal" for r in requests)


def _card(cds_client, findings: dict[str, Any], **patient_fields: Any) -> dict[str, Any]:
    call = call_for(findings)
    call["prefetch"]["patient"] = patient(**patient_fields)
    response = cds_client.post(SERVICE_URL, json=call)
    assert response.status_code == 200, response.get_json()
    [card] = response.get_json()["cards"]
    return card


def _requests(card: dict[str, Any]) -> list[dict[str, Any]]:
    resources = [a["resource"] for s in card["suggestions"] for a in s["actions"]]
    return [r for r in resources if r["resourceType"] == "ServiceRequest"]


def test_emergency_imaging_becomes_a_stat_service_request(cds_client):
    """H-05; policy SP-4 p2, SP-9 p2: an isolated cauda equina red flag proposes an MRI at stat priority,
    and nothing routine beside it."""
    card = _card(cds_client, exam({"saddle_numbness": "present"}))
    priorities = {r["code"]["coding"][0]["code"]: r["priority"] for r in _requests(card)}
    assert priorities == {"referral-emergency-department": "stat", "test-mri": "stat"}


def test_card_wording_never_claims_a_probability(cds_client):
    """H-07; policy SP-10 p2: the cause is one to consider first, with how well the findings fit."""
    card = _card(cds_client, exam({"slr": {"result": "weak", "side": "both"}, "history.onset": "sudden"}))
    assert card["summary"].startswith("Emergency: consider Cauda equina syndrome first.")
    text = card["summary"] + card["detail"]
    assert "most likely" not in text.lower() and "probab" not in card["summary"].lower()
    assert "Causes to consider" in card["detail"] and "not probabilities" in card["detail"]
    rationale = assessment(card)["prediction"][0]["rationale"]
    assert "not a probability" in rationale


def test_an_incomplete_or_out_of_scope_answer_says_so_on_the_card(cds_client):
    """H-11, H-13; policy SP-3 p3, SP-8 p2: the card's summary, detail and record say so."""
    incomplete = _card(cds_client, {"slr": {"result": "weak"}})  # no red-flag question answered
    assert incomplete["summary"].startswith("Incomplete assessment:")
    assert incomplete["indicator"] == "warning"
    assert "not a triage decision" in incomplete["detail"]
    assert all(r["code"]["coding"][0]["code"] != "referral-self-management" for r in _requests(incomplete))
    child = _card(cds_client, exam({"pain.locations": ["groin"], "pain.severity": 4}), birthDate="2019-02-01")
    assert child["summary"].startswith("Routine (under 16, outside intended use)")
    assert child["indicator"] == "warning"
    assert "outside the intended use" in child["detail"]
    assert any("outside the intended use" in n["text"] for n in assessment(child)["note"])


def test_an_emergency_found_before_any_red_flag_question_is_not_called_incomplete(cds_client):
    """Policy SP-3 p3 and SP-5 p2 (independent review, issue 23): a raise failing on both sides that began
    suddenly is an emergency (nothing could make it more urgent, so nothing is left to ask), and the card
    never calls it an incomplete assessment or "not a triage decision"."""
    card = _card(cds_client, {"slr": {"result": "weak", "side": "both"}, "history": {"onset": "sudden"}})
    assert card["summary"].startswith("Emergency") and card["indicator"] == "critical"
    assert "Incomplete assessment" not in card["detail"] and "not a triage decision" not in card["detail"]


def test_operation_outcomes_parse_as_r4b(cds_client):
    response = cds_client.post(SERVICE_URL, json={"hook": "patient-view"})
    assert response.status_code == 422
    get_fhir_model_class("OperationOutcome").model_validate(response.get_json())
