"""Clinical behaviour, one scenario per rule, each naming the source section it follows.

Scenarios start from a complete, normal exam (tests/scenarios.py) so the expected level is final,
not provisional. Source ids: 000 and 001 are the clinical articles, 002-004 fitness material.
"""

import pytest

from tests.clinical_cases import CASES, Case
from tests.scenarios import ADULT, cause_ids, exam, fired, referral


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_scenario(case: Case, triage):
    result = triage(exam(case.changes), ADULT)
    assert result["triage"]["level"] == case.level, case.source
    assert result["triage"]["provisional"] is False  # a complete exam leaves nothing to ask
    assert result["missing"] == []
    assert case.rules <= fired(result), case.source
    causes = cause_ids(result)
    if case.top:
        assert causes[0] == case.top, (case.source, result["causes"][:3])
    assert case.causes <= set(causes), case.source
    assert not case.not_causes & set(causes)
    for to, urgency, tests in case.referrals:
        ref = referral(result, to)
        assert ref is not None and ref["urgency"] == urgency and ref["tests"] == tests, (case.source, ref)
    assert case.advice <= {a["id"] for a in result["advice"]}, case.source


def test_every_level_decision_is_cited_to_the_rules_that_set_it(triage):
    result = triage(exam({"bladder": "retention", "slr.result": "weak"}))
    assert result["triage"]["rules"] == ["RF-CES-BLADDER"]
    sections = {(c["source"], c["section"]) for c in result["triage"]["citations"]}
    assert ("000", "when_to_seek") in sections and ("001", "red_flags") in sections


def test_fitness_sources_alone_never_raise_the_level(triage):
    """004 / 003 / 002 are fitness material: with every clinical finding normal they stay at self-care."""
    result = triage(
        exam(
            {
                "history.activity_at_onset": "leg_raise_exercise",
                "hip.clicking": "present",
                "function.back_arches_on_lift": "present",
                "history.prolonged_sitting": "present",
                "pain.locations": ["low_back"],
                "pain.severity": 6,
            }
        )
    )
    assert result["triage"]["level"] == "self_care"
    authorities = {c["authority"] for a in result["advice"] for c in a["citations"]}
    assert "fitness" in authorities  # and the response says which advice rests on fitness sources


def test_self_management_advice_is_withheld_in_an_emergency(triage):
    """000 'When to Seek Professional Guidance' p2: the patient must be seen first."""
    result = triage(
        exam(
            {
                "bladder": "retention",
                "history.activity_at_onset": "leg_raise_exercise",
                "pain.locations": ["low_back"],
                "pain.severity": 4,
            }
        )
    )
    assert result["triage"]["level"] == "emergency"
    assert result["advice"] == []
    assert referral(result, "emergency_department")["urgency"] == "emergency"


def test_severity_below_severe_does_not_trigger_the_severe_back_pain_rule(triage):
    """001 'Red Flags' p1 speaks of severe pain; 6/10 falls below the service's threshold of 7 (policy SP-11)."""
    result = triage(
        exam(
            {
                "slr.result": "weak",
                "history.onset": "sudden",
                "pain.locations": ["low_back"],
                "pain.severity": 6,
            }
        )
    )
    assert "RF-SUDDEN-SEVERE-BACK-PAIN" not in fired(result)
    assert result["triage"]["level"] == "routine"


def test_causes_name_findings_for_and_against(triage):
    """001 'Nerve Impingement' p3: front-of-thigh symptoms point away from sciatica, back-of-leg ones
    towards it; policy SP-10: a cause is listed with what counts for and against it."""
    result = triage(
        exam({"slr.result": "weak", "pain.locations": ["anterior_thigh", "posterior_leg"], "pain.severity": 5}), ADULT
    )
    sciatica = next(c for c in result["causes"] if c["id"] == "sciatica")
    assert "findings.pain.locations" in sciatica["supporting"]
    assert sciatica["conflicting"] == ["findings.slr.result", "findings.pain.locations"]
    assert sciatica["rules"] == ["CA-UPPER-LUMBAR-FRONT-OF-THIGH", "CA-SCIATICA-BACK-OF-LEG"]
    assert sciatica["rules_against"] == ["CA-UPPER-LUMBAR-FRONT-OF-THIGH"]


def test_a_cause_without_net_support_is_not_listed(triage):
    """Policy SP-10 p2: back-of-leg pain outweighs the weak raise's support for the upper lumbar roots."""
    result = triage(exam({"slr.result": "weak", "pain.locations": ["posterior_leg"], "pain.severity": 5}), ADULT)
    assert cause_ids(result)[0] == "sciatica"
    assert "upper_lumbar_radiculopathy" not in cause_ids(result)
    assert all(c["score"] > 0 for c in result["causes"])
