"""Clinical behaviour, one scenario per rule, each naming the source section it follows.

Scenarios start from a complete, normal exam (tests/scenarios.py) so the expected level is final,
not provisional. Source ids: 000 and 001 are the clinical articles, 002-004 fitness material.
"""

from dataclasses import dataclass, field

import pytest

from tests.scenarios import ADULT, cause_ids, exam, fired, referral


@dataclass
class Case:
    name: str
    source: str  # the section of the source text the expectation follows
    changes: dict
    level: str
    rules: set = field(default_factory=set)  # must fire
    top: str | None = None  # most likely cause
    causes: set = field(default_factory=set)  # must be listed
    not_causes: set = field(default_factory=set)
    referrals: list = field(default_factory=list)  # (to, urgency, tests)
    advice: set = field(default_factory=set)


WHEN_TO_SEEK = "000 'When to Seek Professional Guidance'"
RED_FLAGS = "001 'Red Flags and When to Seek Medical Help'"

CASES = [
    # --- red flags: emergency -------------------------------------------------------------------
    Case(
        "bladder retention",
        f"{WHEN_TO_SEEK} p2; {RED_FLAGS} p2-3",
        {"bladder": "retention"},
        "emergency",
        {"RF-CES-BLADDER"},
        top="cauda_equina_syndrome",
        referrals=[("emergency_department", "emergency", ["mri"])],
    ),
    Case(
        "bladder incontinence",
        f"{RED_FLAGS} p3",
        {"bladder": "incontinence"},
        "emergency",
        {"RF-CES-BLADDER"},
        top="cauda_equina_syndrome",
    ),
    Case(
        "bowel incontinence",
        f"{WHEN_TO_SEEK} p2; {RED_FLAGS} p3",
        {"bowel": "incontinence"},
        "emergency",
        {"RF-CES-BOWEL"},
        top="cauda_equina_syndrome",
        referrals=[("emergency_department", "emergency", ["mri"])],
    ),
    Case(
        "saddle numbness",
        f"{WHEN_TO_SEEK} p2",
        {"saddle_numbness": "present"},
        "emergency",
        {"RF-CES-SADDLE"},
        top="cauda_equina_syndrome",
    ),
    Case(
        "groin numbness recorded under sensation",
        f"{WHEN_TO_SEEK} p2; {RED_FLAGS} p4",
        {"sensation": {"status": "reduced", "areas": ["groin"]}},
        "emergency",
        {"RF-CES-SADDLE"},
    ),
    Case(
        "inner thigh numbness, saddle field says absent",
        f"{RED_FLAGS} p4",
        {"sensation": {"status": "absent", "areas": ["inner_thigh"]}, "saddle_numbness": "absent"},
        "emergency",
        {"RF-CES-SADDLE"},
    ),
    Case(
        "genital numbness with sensation status unknown",
        f"{WHEN_TO_SEEK} p2",
        {"sensation": {"status": "unknown", "areas": ["genital"]}},
        "emergency",
        {"RF-CES-SADDLE"},
    ),
    Case(
        "rapidly worsening weakness",
        f"{RED_FLAGS} p2, p5",
        {"slr.result": "weak", "history.progression": "rapid"},
        "emergency",
        {"RF-RAPID-PROGRESSION"},
    ),
    Case(
        "sudden failed raise after trauma",
        f"{RED_FLAGS} p6; 001 'Nerve Impingement' p3",
        {"slr.result": "unable", "history.onset": "sudden", "history.trauma": "present"},
        "emergency",
        {"RF-TRAUMA", "CA-FEMORAL-AFTER-TRAUMA"},
        causes={"femoral_neuropathy", "hip_flexor_rupture"},
    ),
    Case(
        "failed raise with fever",
        f"{RED_FLAGS} p7; policy SP-6 p1",
        {"slr.result": "weak", "systemic.fever": "present"},
        "emergency",
        {"RF-SYSTEMIC-FEVER"},
        causes={"psoas_abscess", "spinal_infection"},
        referrals=[("emergency_department", "emergency", ["mri", "blood_tests"])],
    ),
    Case(
        "weak raise with weight loss",
        f"{RED_FLAGS} p7; policy SP-6 p2",
        {"slr.result": "weak", "systemic.weight_loss": "present"},
        "emergency",
        {"RF-SYSTEMIC-WEIGHT-LOSS"},
        top="spinal_metastasis",
    ),
    # --- warning signs: urgent ------------------------------------------------------------------
    Case(
        "sudden weakness with sensory loss",
        f"{WHEN_TO_SEEK} p1",
        {"slr.result": "weak", "history.onset": "sudden", "sensation": {"status": "reduced", "areas": ["lower_leg"]}},
        "urgent",
        {"RF-SUDDEN-WEAKNESS-SENSORY-LOSS"},
        referrals=[("physician", "urgent", [])],
    ),
    Case(
        "unrelenting low back pain",
        f"{WHEN_TO_SEEK} p1",
        {"slr.result": "weak", "pain.locations": ["low_back"], "pain.severity": 5, "pain.unrelenting": "present"},
        "urgent",
        {"RF-UNRELENTING-PAIN"},
    ),
    Case(
        "sudden failure with severe low back pain",
        f"{RED_FLAGS} p1",
        {
            "slr.result": "unable",
            "history.onset": "sudden",
            "pain.locations": ["low_back"],
            "pain.severity": 8,
        },
        "urgent",
        {"RF-SUDDEN-SEVERE-BACK-PAIN"},
        causes={"cauda_equina_syndrome"},
    ),
    Case(
        "pain down both legs",
        f"{WHEN_TO_SEEK} p1",
        {"slr.result": "pain_limited", "pain.locations": ["both_legs"], "pain.severity": 4},
        "urgent",
        {"RF-PAIN-BOTH-LEGS"},
        causes={"cauda_equina_syndrome"},
    ),
    Case(
        "both legs weak",
        f"{WHEN_TO_SEEK} p1 (both legs)",
        {"slr": {"result": "weak", "side": "both"}},
        "urgent",
        {"RF-BOTH-LEGS-WEAK"},
    ),
    # --- routine --------------------------------------------------------------------------------
    Case(
        "pain-limited raise, nothing else",
        f"000 intro; {RED_FLAGS} p1",
        {"slr.result": "pain_limited"},
        "routine",
        {"LV-FAILED-LEG-RAISE", "CA-PAIN-INHIBITED-RAISE"},
        referrals=[("physician", "routine", []), ("physical_therapist", "routine", [])],
    ),
    Case(
        "slowly progressive weakness",
        f"{WHEN_TO_SEEK} p3",
        {"slr.result": "weak", "history.progression": "progressive"},
        "routine",
        {"LV-PROGRESSIVE-WEAKNESS"},
        top="upper_lumbar_radiculopathy",
    ),
    Case(
        "walking affected",
        f"{WHEN_TO_SEEK} p3",
        {"function.walking_affected": "present"},
        "routine",
        {"LV-WALKING-AFFECTED"},
        referrals=[("physician", "routine", []), ("physical_therapist", "routine", [])],
    ),
    Case(
        "reduced hip range",
        "001 'Structural Problems within the Hip Joint' p1",
        {"hip.range_reduced": "present", "slr.result": "pain_limited"},
        "routine",
        {"LV-HIP-JOINT-SIGNS", "CA-HIP-RANGE-REDUCED", "CA-IMPINGEMENT-PAINFUL-FLEXION"},
        top="hip_osteoarthritis",
        causes={"hip_impingement"},
        referrals=[("orthopedist", "routine", [])],
    ),
    Case(
        "catching hip",
        "001 'Structural Problems within the Hip Joint' p2",
        {"hip.catching_or_locking": "present", "hip.clicking": "present"},
        "routine",
        {"LV-HIP-JOINT-SIGNS", "CA-LABRAL-CATCHING"},
        top="labral_tear",
        referrals=[("orthopedist", "routine", [])],
    ),
    Case(
        "weakness with front-of-thigh numbness",
        f"001 'Nerve Impingement' p1-3; {RED_FLAGS} p8",
        {"slr.result": "weak", "sensation": {"status": "reduced", "areas": ["anterior_thigh"]}},
        "routine",
        {"RE-NERVE-WORKUP", "CA-UPPER-LUMBAR-FRONT-OF-THIGH", "CA-NERVE-SENSORY-LOSS", "CA-UPPER-LUMBAR-WEAKNESS"},
        top="upper_lumbar_radiculopathy",
        causes={"femoral_neuropathy"},
        not_causes={"sciatica"},
        referrals=[("neurologist", "routine", ["mri", "nerve_conduction_study"])],
    ),
    Case(
        "sudden inability after a kick",
        f"000 'Focusing on the Muscles' p1-2; {RED_FLAGS} p8; policy SP-5 p5 (a sudden complete inability is urgent)",
        {
            "slr.result": "unable",
            "history.onset": "sudden",
            "history.activity_at_onset": "sprint_or_kick",
            "pain.locations": ["front_of_hip"],
            "pain.severity": 6,
        },
        "urgent",
        {"RE-STRUCTURAL-WORKUP", "CA-RUPTURE-SUDDEN-INABILITY", "CA-STRAIN-MECHANISM", "RF-SUDDEN-INABILITY"},
        top="hip_flexor_rupture",
        causes={"hip_flexor_strain"},
        referrals=[("orthopedist", "urgent", ["mri"])],
    ),
    # --- causes ---------------------------------------------------------------------------------
    Case(
        "femoral nerve after injury",
        "001 'Nerve Impingement' p3; policy SP-7 p1 (a failed raise after an injury is urgent)",
        {
            "slr.result": "weak",
            "history.trauma": "present",
            "pain.locations": ["anterior_thigh"],
            "pain.severity": 5,
        },
        "urgent",
        {"CA-FEMORAL-AFTER-TRAUMA", "RF-TRAUMA-FAILED-RAISE"},
        causes={"femoral_neuropathy", "upper_lumbar_radiculopathy"},
    ),
    Case(
        "pain down the back of the leg",
        "000 'When Nerves Interfere' p3; 001 'Nerve Impingement' p3",
        {
            "slr.result": "pain_limited",
            "pain.locations": ["low_back", "posterior_leg"],
            "pain.severity": 5,
        },
        "routine",
        {"CA-SCIATICA-BACK-OF-LEG"},
        top="sciatica",
    ),
    Case(
        "sprint strain",
        "000 'Focusing on the Muscles' p1-2; 001 'Direct Muscular Weakness and Injury' p1",
        {
            "slr.result": "pain_limited",
            "history.onset": "sudden",
            "history.activity_at_onset": "sprint_or_kick",
            "hip.front_tenderness": "present",
            "pain.locations": ["front_of_hip", "groin"],
            "pain.severity": 6,
        },
        "routine",
        {"CA-STRAIN-MECHANISM", "CA-STRAIN-FRONT-PAIN", "CA-STRAIN-TENDERNESS", "CA-PAIN-INHIBITED-RAISE"},
        top="hip_flexor_strain",
    ),
    Case(
        "weak raise after a sprint is not a complete tear",
        "000 'Focusing on the Muscles' p2",
        {"slr.result": "weak", "history.activity_at_onset": "sprint_or_kick"},
        "routine",
        {"CA-RUPTURE-RAISE-POSSIBLE"},
    ),
    Case(
        "painful raise with front-of-hip pain",
        "001 'Direct Muscular Weakness and Injury' p2-3; policy SP-10 p2 (the more specific evidence first)",
        {
            "slr.result": "pain_limited",
            "hip.front_tenderness": "present",
            "pain.locations": ["front_of_hip"],
            "pain.severity": 4,
        },
        "routine",
        {"CA-TENDINITIS-PAINFUL-FRONT", "CA-ILIOPSOAS-GRADUAL-FRONT-PAIN"},
        top="iliopsoas_syndrome",
        causes={"iliopsoas_tendinitis_bursitis"},
    ),
    Case(
        "desk worker with painful raise",
        "001 'Direct Muscular Weakness and Injury' p3",
        {
            "slr.result": "pain_limited",
            "history.prolonged_sitting": "present",
            "pain.locations": ["groin"],
            "pain.severity": 4,
        },
        "routine",
        {"CA-ILIOPSOAS-SITTING", "CA-ILIOPSOAS-GRADUAL-FRONT-PAIN"},
        top="iliopsoas_syndrome",
        advice={"stretch_hip_flexors"},
    ),
    Case(
        "weakness after a period in bed",
        "001 'Direct Muscular Weakness and Injury' p2; 000 'Focusing on the Muscles' p3",
        {"slr.result": "weak", "history.recent_immobility": "present"},
        "routine",
        {"CA-DISUSE-IMMOBILITY", "CA-DISUSE-GRADUAL"},
        top="hip_flexor_weakness_atrophy",
    ),
    # --- core and exercise (fitness sources cannot raise the level) ----------------------------
    Case(
        "back arches on lifting",
        "000 'Focusing on the Muscles' p4; 001 'Understanding Hip Flexion' p2",
        {"function.back_arches_on_lift": "present"},
        "self_care",
        {"CA-CORE-BACK-ARCHES"},
        top="core_instability",
        advice={"flatten_lower_back", "bend_other_knee", "limit_range", "strengthen_core"},
    ),
    Case(
        "low back pain from leg raises",
        "004 'Why does my lower back hurt' p2-6, p12; 002 'In Summary'; 003 intro",
        {
            "history.activity_at_onset": "leg_raise_exercise",
            "function.back_arches_on_lift": "present",
            "pain.locations": ["low_back"],
            "pain.severity": 4,
        },
        "self_care",
        {"CA-EXERCISE-BACK-STRAIN", "CA-EXERCISE-BACK-ARCH", "RE-THERAPIST-IF-PERSISTS"},
        top="exercise_related_back_strain",
        referrals=[("physical_therapist", "if_persistent", []), ("self_management", "self_care", [])],
        advice={
            "stop_if_back_hurts",
            "prefer_crunches",
            "slow_tempo",
            "progress_gradually",
            "adapt_with_therapist",
            "safety_net",
        },
    ),
    Case(
        "hip clicks during leg raises",
        "003 'The \"Hip Snap\"' and FAQ 'Why do my hips pop'",
        {"hip.clicking": "present"},
        "self_care",
        {"CA-SNAPPING-HIP"},
        top="snapping_hip",
        advice={"snapping_hip_range", "stretch_hip_flexors"},
    ),
    Case(
        "nothing abnormal",
        f"{WHEN_TO_SEEK} p1 (a minor strain); {RED_FLAGS} p1",
        {},
        "self_care",
        {"LV-BASELINE"},
        referrals=[("self_management", "self_care", [])],
        advice={"safety_net"},
    ),
]


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
