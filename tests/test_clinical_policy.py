"""The service's clinical policy (docs/clinical-safety/policy.md), scenario by scenario.

Each scenario names the hazard it controls (H-nn, docs/clinical-safety/hazard-log.md) and the policy
section it follows (SP-n). For each hazard of the clinical safety review there is an edge scenario (the
smallest set of findings that must escalate) and its neighbour (one finding fewer, which must not).
Scenarios start from a complete normal exam of a 40-year-old unless they say otherwise, so the expected
level is final, not provisional.
"""

from __future__ import annotations

import pytest

from tests.clinical_cases import CASES, POLICY_CASES, PolicyCase
from tests.scenarios import ADULT, cause_ids, exam, fired, referral


def _request(case: PolicyCase) -> tuple[dict, dict | None]:
    return exam(case.changes), case.patient


@pytest.mark.parametrize("case", POLICY_CASES, ids=[c.name for c in POLICY_CASES])
def test_policy_scenario(case: PolicyCase, triage):
    findings, patient = _request(case)
    result = triage(findings, patient)
    why = (case.refs, result["triage"]["rules"], [m["field"] for m in result["missing"]][:3])
    assert result["triage"]["level"] == case.level, why
    if case.final:
        assert result["triage"]["provisional"] is False, why
    assert case.rules <= fired(result), why
    assert not case.not_rules & fired(result), why
    causes = cause_ids(result)
    if case.top:
        assert causes and causes[0] == case.top, (case.refs, causes)
    assert case.causes <= set(causes), case.refs
    assert not case.not_causes & set(causes), case.refs
    for to, urgency, tests in case.referrals:
        ref = referral(result, to)
        assert ref is not None and (ref["urgency"], ref["tests"]) == (urgency, tests), (case.refs, ref)
    if case.level == "emergency":  # SP-9 p1: nothing less urgent beside an emergency
        assert {r["urgency"] for r in result["referrals"]} == {"emergency"}
        assert result["advice"] == []
    if case.level == "urgent":  # SP-9 p1: beside an urgent level, nothing less urgent without tests
        assert all(r["urgency"] == "urgent" for r in result["referrals"]), result["referrals"]
    if case.asks_first:
        assert result["missing"][0]["field"] == case.asks_first, why
    assert result["scope"]["population"] == case.scope


def test_every_hazard_of_the_review_has_an_edge_and_its_neighbour():
    for hazard in ("H-01", "H-02", "H-03", "H-04", "H-05", "H-06", "H-07"):
        edges = {c.edge for c in POLICY_CASES if hazard in c.refs.split("; ")}
        assert {"escalates", "neighbour"} <= edges, hazard


def test_every_rule_cause_referral_and_test_has_a_scenario(kb):
    """Every rule, cause, referral target and test appears in a scenario naming its source or policy section."""
    rules = set().union(*(c.rules for c in CASES), *(c.rules for c in POLICY_CASES))
    assert {r.id for r in kb.rules} - {"SN-SAFETY-NET"} <= rules, "write a scenario naming its section"
    causes = {c.top for c in [*CASES, *POLICY_CASES]} | set().union(*(c.causes for c in [*CASES, *POLICY_CASES]))
    assert set(kb.causes) <= causes
    referrals = [r for c in [*CASES, *POLICY_CASES] for r in c.referrals]
    assert set(kb.referral_targets) <= {to for to, _, _ in referrals}
    assert set(kb.tests) <= {t for _, _, tests in referrals for t in tests}


# --- what the answer says, beyond the level --------------------------------------------------------


def test_the_baseline_is_in_the_trace_only_when_it_decides(triage):
    """H-07 (the baseline's 'no warning sign' in an emergency's trace); SP-9 p4 (safety net)."""
    emergency = triage(exam({"bowel": "incontinence"}), ADULT)
    assert "LV-BASELINE" not in fired(emergency) and "SN-SAFETY-NET" not in fired(emergency)
    routine = triage(exam({"slr.result": "pain_limited"}), ADULT)
    assert "LV-BASELINE" not in fired(routine) and "SN-SAFETY-NET" in fired(routine)
    calm = triage(exam(), ADULT)
    assert {"LV-BASELINE", "SN-SAFETY-NET"} <= fired(calm)


def test_the_safety_net_names_retention_leakage_and_the_other_red_flags(triage):
    """SP-9 p4: the safety net says in plain words when to go to an emergency department."""
    text = next(a["text"] for a in triage(exam(), ADULT)["advice"] if a["id"] == "safety_net").lower()
    for words in ("cannot pass urine", "leaking urine", "numbness", "both legs", "fever", "not eased by rest", "fall"):
        assert words in text, words


def test_a_cause_cites_only_the_rules_that_supported_it(triage, kb):
    """H-07; SP-10 p4: femoral neuropathy, supported from the front of the thigh and counted against from
    the back of the leg, does not cite the sciatica passages of the rule against it."""
    result = triage(
        exam({"slr.result": "weak", "pain.locations": ["anterior_thigh", "posterior_leg"], "pain.severity": 5}), ADULT
    )
    femoral = next(c for c in result["causes"] if c["id"] == "femoral_neuropathy")
    assert femoral["rules"] == ["CA-UPPER-LUMBAR-FRONT-OF-THIGH", "CA-SCIATICA-BACK-OF-LEG"]
    assert femoral["rules_against"] == ["CA-SCIATICA-BACK-OF-LEG"]
    cited = {(c["source"], c["start"]) for c in femoral["citations"]}
    sciatica_passage = kb.citations["000.nerves.sciatica"]
    assert (sciatica_passage.source, sciatica_passage.start) not in cited


def test_a_risk_factor_alone_is_weak_support(triage):
    """H-07; SP-10 p1: long periods of sitting are a risk factor (weight 1), never strong."""
    result = triage(exam({"history.prolonged_sitting": "present"}), ADULT)
    iliopsoas = next(c for c in result["causes"] if c["id"] == "iliopsoas_syndrome")
    assert (iliopsoas["strength"], iliopsoas["score"]) == ("weak", 1)


def test_a_discriminating_sign_is_strong_support(triage):
    """H-07; SP-10 p2: a bladder red flag is a discriminating sign of cauda equina syndrome."""
    result = triage(exam({"bladder": "retention"}), ADULT)
    assert result["causes"][0]["id"] == "cauda_equina_syndrome"
    assert result["causes"][0]["strength"] == "strong"


def test_an_answer_with_no_red_flag_answered_is_incomplete(triage):
    """H-11; SP-3 p3: an empty exam is not presented as self-care advice."""
    result = triage({})
    triage_ = result["triage"]
    assert triage_["level"] == "routine"  # SP-3 p3: the cauda equina screen is not done
    assert triage_["incomplete"] is True and triage_["provisional"] is True
    assert triage_["label"] == "Incomplete assessment"
    assert "not a triage decision" in triage_["action"]
    assert referral(result, "self_management") is None
    assert [m["field"] for m in result["missing"][:3]] == [
        "findings.bladder",
        "findings.bowel",
        "findings.saddle_numbness",
    ]


def test_one_red_flag_answered_makes_the_assessment_complete_but_provisional(triage):
    """H-11; SP-3 p3: the label is the level's own as soon as any red-flag question is answered, and the
    level stays at routine until the whole cauda equina screen is answered."""
    result = triage({"bladder": "normal"})
    assert result["triage"]["incomplete"] is False
    assert (result["triage"]["level"], result["triage"]["label"]) == ("routine", "Routine")
    assert result["triage"]["rules"] == ["LV-CES-SCREEN-NOT-DONE"]
    assert result["triage"]["provisional"] is True
    screened = triage({"bladder": "normal", "bowel": "normal", "saddle_numbness": "absent"})
    assert screened["triage"]["level"] == "self_care"


def test_an_urgent_finding_keeps_its_label_when_no_red_flag_was_asked(triage):
    """SP-3 p3: 'incomplete' never hides an urgent level behind a label, nor flags it: an urgent level found
    before any red-flag answer is a decision (independent review, issue 23), and the red flags are asked."""
    result = triage({"slr": {"result": "weak", "side": "both"}}, ADULT)
    assert result["triage"]["incomplete"] is False
    assert (result["triage"]["level"], result["triage"]["label"]) == ("urgent", "Urgent")
    assert {"findings.bladder", "findings.bowel", "findings.saddle_numbness"} <= {m["field"] for m in result["missing"]}
    assert triage({"slr": {"result": "weak"}}, ADULT)["triage"]["incomplete"] is True  # routine: not a decision


def test_pain_without_a_place_is_a_conflict_read_the_more_urgent_way(triage):
    """H-10; SP-3 p4: severity 8 and unrelenting with no place listed is not 'no pain'."""
    result = triage(exam({"pain.severity": 8, "pain.unrelenting": "present", "pain.locations": []}), ADULT)
    assert [c["id"] for c in result["conflicts"]] == ["CF-PAIN-WITHOUT-PLACE"]
    assert result["conflicts"][0]["read_as_unknown"] == ["findings.pain.locations"]
    assert result["triage"]["level"] == "urgent"  # unrelenting pain stands on its own
    assert "findings.pain.locations" in {m["field"] for m in result["missing"]}


def test_both_sides_failing_with_a_normal_raise_asks_for_the_raise(triage):
    """H-10; SP-3 p4: the raise is read as unknown, so the rules waiting on it ask for it."""
    result = triage(exam({"slr.side": "both"}), ADULT)
    assert [c["id"] for c in result["conflicts"]] == ["CF-BOTH-SIDES-NORMAL-RAISE"]
    assert result["triage"]["provisional"] is True
    assert result["missing"][0]["field"] == "findings.slr.result"


def test_no_conflict_is_reported_for_consistent_findings(triage):
    assert triage(exam({"slr": {"result": "weak", "side": "both"}}), ADULT)["conflicts"] == []


def test_scope_names_the_population_for_each_age(triage):
    """H-13; SP-8 p1-2: every answer says where the patient stands against the intended population."""
    assert triage(exam(), {"age": 16})["scope"]["population"] == "in"
    assert triage(exam(), {"age": 15})["scope"]["population"] == "out"
    child = triage(exam(), {"age": 15})
    assert "outside the intended use" in child["scope"]["note"]
    assert child["triage"]["label"] == "Routine (under 16, outside intended use)"
    assert triage(exam())["scope"]["population"] == "unknown"
    for age in (16, 24, 78, 100):  # an adult's age alone changes nothing when nothing depends on it
        assert triage(exam(), {"age": age})["triage"]["level"] == "self_care"


@pytest.mark.parametrize("age", [16, 30, 70, 95, None])
@pytest.mark.parametrize("pain", [None, [], ["low_back"], ["groin"], ["posterior_leg"]])
def test_fever_with_walking_affected_is_at_least_urgent_at_any_age(triage, age, pain):
    """H-02; SP-6 p6 (issue 23, the independent clinical review): fever with walking affected (a new limp)
    is at least urgent at any age, wherever the pain is or while its place is unknown, with blood tests on a
    same-day referral; under 16 it stays an emergency (SP-8 p2)."""
    findings = exam({"systemic.fever": "present", "function.walking_affected": "present", "pain.locations": pain})
    result = triage(findings, None if age is None else {"age": age})
    assert result["triage"]["level"] == "urgent", (age, pain, result["triage"]["rules"])
    assert "RF-FEVER-WALKING-AFFECTED" in fired(result)
    blood = [r for r in result["referrals"] if "blood_tests" in r["tests"]]
    assert blood and all(r["urgency"] == "urgent" for r in blood), result["referrals"]
    child = triage(findings, {"age": 12})
    assert child["triage"]["level"] == "emergency" and "RF-CHILD-FEVER-HIP" in fired(child)
    without = triage(exam({"systemic.fever": "present", "function.walking_affected": None}), {"age": 30})
    assert "findings.function.walking_affected" in [m["field"] for m in without["missing"]]  # asked, not assumed


@pytest.mark.parametrize("age", [1, 5, 10, 15])
@pytest.mark.parametrize(
    "pain", [["anterior_thigh"], ["anterior_thigh", "low_back"], ["anterior_thigh", "posterior_leg"]]
)
def test_a_febrile_child_with_thigh_pain_is_an_emergency(triage, age, pain):
    """H-04; SP-8 p2 (issue 23, the independent clinical review): in a child, pain from the hip (septic
    arthritis, a slipped upper femoral epiphysis) is often felt in the thigh, so fever with pain at the front
    of the thigh under 16 is the emergency that fever with hip or groin pain is, with blood tests and X-ray;
    without fever it is not, and at 16 it is the adult's urgent fever with front thigh pain (SP-6 p1)."""
    findings = exam({"systemic.fever": "present", "pain.locations": pain, "pain.severity": 5})
    result = triage(findings, {"age": age})
    assert result["triage"]["level"] == "emergency", (age, pain, result["triage"]["rules"])
    assert "RF-CHILD-FEVER-HIP" in fired(result)
    assert cause_ids(result)[0] == "septic_arthritis_hip"
    ed = referral(result, "emergency_department")
    assert ed is not None and {"blood_tests", "x_ray"} <= set(ed["tests"]), result["referrals"]
    without = triage(exam({"pain.locations": pain, "pain.severity": 5}), {"age": age})
    assert "RF-CHILD-FEVER-HIP" not in fired(without) and without["triage"]["level"] != "emergency"
    adult = triage(findings, {"age": 16})
    assert adult["triage"]["level"] == "urgent" and "RF-CHILD-FEVER-HIP" not in fired(adult)


def test_an_unknown_age_is_asked_when_a_rule_waits_on_it(triage):
    """SP-6 p5: an unknown age keeps the answer provisional and asks for it."""
    result = triage(exam())
    assert result["triage"]["provisional"] is True
    assert [m["field"] for m in result["missing"]] == ["patient.age"]
    assert result["missing"][0]["rules"] == ["LV-CHILD"]


def test_every_scenario_names_a_hazard_and_a_policy_section():
    """Each scenario names a hazard of the log and a section of the policy it follows."""
    for case in POLICY_CASES:
        refs = case.refs.split("; ")
        assert any(r.startswith("H-") for r in refs) and any(r.startswith("SP-") for r in refs), case.name
