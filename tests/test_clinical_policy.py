"""The service's clinical policy (docs/clinical-safety/policy.md), scenario by scenario.

Each scenario names the hazard it controls (H-nn, docs/clinical-safety/hazard-log.md) and the policy
section it follows (SP-n). For each hazard of the clinical safety review there is an edge scenario (the
smallest set of findings that must escalate) and its neighbour (one finding fewer, which must not).
Scenarios start from a complete normal exam of a 40-year-old unless they say otherwise, so the expected
level is final, not provisional.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.scenarios import ADULT, cause_ids, exam, fired, referral
from tests.test_clinical_rules import CASES


@dataclass
class PolicyCase:
    name: str
    refs: str  # hazard id(s) and policy section(s)
    changes: dict
    level: str
    patient: dict | None = field(default_factory=lambda: dict(ADULT))
    edge: str | None = None  # "escalates": the smallest set that must escalate; "neighbour": one fewer, must not
    rules: set = field(default_factory=set)  # must fire
    not_rules: set = field(default_factory=set)  # must not fire
    top: str | None = None  # the cause listed first
    causes: set = field(default_factory=set)
    not_causes: set = field(default_factory=set)
    referrals: list = field(default_factory=list)  # (to, urgency, tests)
    asks_first: str | None = None  # the first question still to ask
    asks: set = field(default_factory=set)  # questions that must be asked
    scope: str = "in"
    final: bool = True  # not provisional


POLICY_CASES = [
    # --- H-01: warning signs that add up (SP-5) -------------------------------------------------
    PolicyCase(
        "two warning signs: unrelenting back pain and pain down both legs",
        "H-01; SP-5 p1",
        {
            "slr.result": "weak",
            "pain.locations": ["low_back", "both_legs"],
            "pain.severity": 6,
            "pain.unrelenting": "present",
        },
        "emergency",
        edge="escalates",
        rules={"RF-WARNING-SIGNS-TOGETHER"},
        top="cauda_equina_syndrome",
        referrals=[("emergency_department", "emergency", ["mri"])],
    ),
    PolicyCase(
        "one warning sign: unrelenting back pain alone",
        "H-01; SP-5 p1; SP-6 p4",
        {"slr.result": "weak", "pain.locations": ["low_back"], "pain.severity": 6, "pain.unrelenting": "present"},
        "urgent",
        edge="neighbour",
        rules={"RF-UNRELENTING-PAIN"},
        not_rules={"RF-WARNING-SIGNS-TOGETHER"},
    ),
    PolicyCase(
        "sudden weakness with sensory loss and pain down both legs",
        "H-01; SP-5 p1",
        {
            "slr.result": "weak",
            "history.onset": "sudden",
            "sensation": {"status": "reduced", "areas": ["lower_leg"]},
            "pain.locations": ["both_legs"],
            "pain.severity": 5,
        },
        "emergency",
        edge="escalates",
        rules={"RF-WARNING-SIGNS-TOGETHER", "RF-SUDDEN-WEAKNESS-SENSORY-LOSS", "RF-PAIN-BOTH-LEGS"},
    ),
    PolicyCase(
        "sudden weakness of both legs with severe back pain",
        "H-01; SP-5 p2",
        {
            "slr": {"result": "weak", "side": "both"},
            "history.onset": "sudden",
            "pain.locations": ["low_back"],
            "pain.severity": 8,
        },
        "emergency",
        rules={"RF-ACUTE-BILATERAL-WEAKNESS"},
        top="cauda_equina_syndrome",
        referrals=[("emergency_department", "emergency", ["mri"])],
    ),
    PolicyCase(
        "both legs weak, getting worse slowly",
        "H-01; SP-5 p2",
        {"slr": {"result": "weak", "side": "both"}, "history.progression": "progressive"},
        "emergency",
        edge="escalates",
        rules={"RF-ACUTE-BILATERAL-WEAKNESS"},
    ),
    PolicyCase(
        "both legs weak, gradual and stable: deconditioning is not an emergency",
        "H-01; SP-5 p2; SP-11 p2",
        {"slr": {"result": "weak", "side": "both"}},
        "urgent",
        edge="neighbour",
        rules={"RF-BOTH-LEGS-WEAK"},
        not_rules={"RF-ACUTE-BILATERAL-WEAKNESS"},
    ),
    PolicyCase(
        "raise stopped by pain on both sides, sudden",
        "H-01; H-10; SP-5 p2",
        {"slr": {"result": "pain_limited", "side": "both"}, "history.onset": "sudden"},
        "emergency",
        edge="escalates",
        rules={"RF-ACUTE-BILATERAL-WEAKNESS"},
    ),
    PolicyCase(
        "raise stopped by pain on both sides, gradual and stable (hip osteoarthritis)",
        "H-01; SP-5 p2",
        {"slr": {"result": "pain_limited", "side": "both"}, "hip.range_reduced": "present"},
        "routine",
        edge="neighbour",
        not_rules={"RF-ACUTE-BILATERAL-WEAKNESS", "RF-BOTH-LEGS-WEAK"},
    ),
    PolicyCase(
        "raise recorded normal yet failing on both sides, sudden (a contradiction)",
        "H-10; SP-3 p4; SP-5 p2",
        {"slr": {"result": "normal", "side": "both"}, "history.onset": "sudden"},
        "emergency",
        rules={"RF-ACUTE-BILATERAL-WEAKNESS"},
    ),
    PolicyCase(
        "sudden failed raise with severe back pain at 65",
        "H-01; H-04; SP-5 p3",
        {"slr.result": "unable", "history.onset": "sudden", "pain.locations": ["low_back"], "pain.severity": 7},
        "emergency",
        patient={"age": 65},
        edge="escalates",
        rules={"RF-OLDER-SUDDEN-SEVERE-BACK-PAIN"},
    ),
    PolicyCase(
        "sudden failed raise with severe back pain at 64",
        "H-01; H-04; SP-5 p3",
        {"slr.result": "unable", "history.onset": "sudden", "pain.locations": ["low_back"], "pain.severity": 7},
        "urgent",
        patient={"age": 64},
        edge="neighbour",
        rules={"RF-SUDDEN-SEVERE-BACK-PAIN"},
        not_rules={"RF-OLDER-SUDDEN-SEVERE-BACK-PAIN"},
    ),
    PolicyCase(
        "sudden failed raise with severe pain, place not recorded",
        "H-01; H-10; SP-5 p4",
        {"slr.result": "weak", "history.onset": "sudden", "pain.severity": 8, "pain.locations": None},
        "urgent",
        edge="escalates",
        rules={"RF-SUDDEN-SEVERE-PAIN"},
        referrals=[("physician", "urgent", [])],
        final=False,
    ),
    PolicyCase(
        "sudden failed raise with pain of 6, place not recorded",
        "H-01; SP-5 p4; SP-11 p1",
        {"slr.result": "weak", "history.onset": "sudden", "pain.severity": 6, "pain.locations": None},
        "routine",
        edge="neighbour",
        not_rules={"RF-SUDDEN-SEVERE-PAIN"},
        final=False,
    ),
    PolicyCase(
        "sudden weakness of the leg at 60, no pain",
        "H-01; H-04; SP-5 p5",
        {"slr.result": "weak", "history.onset": "sudden"},
        "urgent",
        patient={"age": 60},
        edge="escalates",
        rules={"RF-SUDDEN-WEAKNESS-50"},
        top="stroke_or_spinal_cord",
    ),
    PolicyCase(
        "sudden weakness of the leg at 49, no pain",
        "H-01; H-04; SP-5 p5",
        {"slr.result": "weak", "history.onset": "sudden"},
        "routine",
        patient={"age": 49},
        edge="neighbour",
        not_rules={"RF-SUDDEN-WEAKNESS-50"},
    ),
    PolicyCase(
        "a leg that suddenly cannot be lifted at 60, no pain",
        "H-01; SP-5 p5",
        {"slr.result": "unable", "history.onset": "sudden"},
        "urgent",
        patient={"age": 60},
        rules={"RF-SUDDEN-INABILITY", "RF-SUDDEN-WEAKNESS-50"},
        top="stroke_or_spinal_cord",
    ),
    PolicyCase(
        "cancer history with back pain and pain down both legs",
        "H-02; SP-6 p3",
        {"history.cancer": "present", "pain.locations": ["low_back", "both_legs"], "pain.severity": 5},
        "emergency",
        patient={"age": 68},
        rules={"RF-CANCER-NEURO-DEFICIT"},
        referrals=[("emergency_department", "emergency", ["mri", "mri_whole_spine"])],
    ),
    PolicyCase(
        "an older fall with fever keeps the blood tests on the emergency referral",
        "H-05; SP-9 p1",
        {
            "history.trauma": "present",
            "systemic.fever": "present",
            "pain.locations": ["groin"],
            "pain.severity": 6,
            "function.walking_affected": "present",
        },
        "emergency",
        patient={"age": 84},
        rules={"RF-OLDER-FALL", "RF-FEVER-HIP-PAIN"},
        referrals=[("emergency_department", "emergency", ["x_ray", "blood_tests"])],
    ),
    PolicyCase(
        "no physical therapy beside an urgent level",
        "H-05; SP-9 p1",
        {"slr.result": "pain_limited", "pain.locations": ["both_legs"], "pain.severity": 5},
        "urgent",
        rules={"LV-FAILED-LEG-RAISE", "RF-PAIN-BOTH-LEGS"},
        referrals=[("physician", "urgent", ["mri"])],
    ),
    PolicyCase(
        "sudden failed raise, pain 8, no place listed (a contradiction)",
        "H-10; SP-3 p4; SP-5 p4",
        {"slr.result": "unable", "history.onset": "sudden", "pain.severity": 8, "pain.locations": []},
        "urgent",
        rules={"RF-SUDDEN-SEVERE-PAIN"},
        final=False,
    ),
    # --- H-02: red flags with a normal or untested raise (SP-4, SP-6) -----------------------------
    PolicyCase(
        "fever with pain at the front of the thigh",
        "H-02; SP-6 p1",
        {"systemic.fever": "present", "pain.locations": ["anterior_thigh"], "pain.severity": 5},
        "urgent",
        rules={"RF-FEVER-HIP-PAIN"},
        causes={"psoas_abscess", "septic_arthritis_hip"},
    ),
    PolicyCase(
        "fever with loss of sensation and a normal raise",
        "H-02; SP-6 p1",
        {"systemic.fever": "present", "sensation": {"status": "reduced", "areas": ["lower_leg"]}},
        "emergency",
        rules={"RF-SYSTEMIC-FEVER"},
        referrals=[("emergency_department", "emergency", ["mri", "blood_tests"])],
    ),
    PolicyCase(
        "fever with low back pain, raise normal",
        "H-02; SP-6 p1",
        {"systemic.fever": "present", "pain.locations": ["low_back"], "pain.severity": 5},
        "urgent",
        edge="escalates",
        rules={"RF-FEVER-BACK-PAIN"},
        top="spinal_infection",
        referrals=[("physician", "urgent", ["blood_tests"])],
    ),
    PolicyCase(
        "fever with no pain recorded: a medical assessment, not self-care",
        "H-02; SP-6 p1",
        {"systemic.fever": "present"},
        "routine",
        edge="neighbour",
        rules={"LV-FEVER"},
        not_rules={"RF-FEVER-BACK-PAIN"},
    ),
    PolicyCase(
        "fever with groin pain, raise not tested",
        "H-02; H-07; SP-6 p1; SP-10 p3",
        {"systemic.fever": "present", "pain.locations": ["groin"], "pain.severity": 6, "slr.result": "not_tested"},
        "urgent",
        rules={"RF-FEVER-HIP-PAIN"},
        top="septic_arthritis_hip",
        not_causes={"iliopsoas_tendinitis_bursitis", "hip_osteoarthritis"},
        asks_first="findings.slr.result",
        final=False,
    ),
    PolicyCase(
        "unexplained weight loss with back pain at 72",
        "H-02; H-04; SP-6 p2",
        {"systemic.weight_loss": "present", "pain.locations": ["low_back"], "pain.severity": 4},
        "urgent",
        patient={"age": 72},
        edge="escalates",
        rules={"RF-WEIGHT-LOSS-BACK-PAIN-50"},
        top="spinal_metastasis",
    ),
    PolicyCase(
        "unexplained weight loss with back pain at 49",
        "H-02; H-04; SP-6 p2",
        {"systemic.weight_loss": "present", "pain.locations": ["low_back"], "pain.severity": 4},
        "routine",
        patient={"age": 49},
        edge="neighbour",
        rules={"LV-WEIGHT-LOSS"},
        not_rules={"RF-WEIGHT-LOSS-BACK-PAIN-50"},
    ),
    PolicyCase(
        "unrelenting night pain of 9/10, raise normal",
        "H-02; SP-6 p4",
        {"pain.locations": ["low_back"], "pain.severity": 9, "pain.unrelenting": "present", "pain.night": "present"},
        "urgent",
        edge="escalates",
        rules={"RF-UNRELENTING-PAIN", "LV-NIGHT-PAIN"},
    ),
    PolicyCase(
        "night pain alone",
        "H-02; SP-6 p4",
        {"pain.locations": ["front_of_hip"], "pain.severity": 5, "pain.night": "present"},
        "routine",
        edge="neighbour",
        rules={"LV-NIGHT-PAIN"},
        not_rules={"RF-UNRELENTING-PAIN"},
    ),
    PolicyCase(
        "pain down both legs, raise normal",
        "H-02; SP-4 p3",
        {"pain.locations": ["both_legs"], "pain.severity": 5},
        "urgent",
        edge="escalates",
        rules={"RF-PAIN-BOTH-LEGS"},
        top="cauda_equina_syndrome",
    ),
    PolicyCase(
        "pain down the back of one leg, raise normal",
        "H-02; SP-4 p3",
        {"pain.locations": ["posterior_leg"], "pain.severity": 5},
        "self_care",
        edge="neighbour",
        not_rules={"RF-PAIN-BOTH-LEGS"},
        top="sciatica",
    ),
    PolicyCase(
        "weakness further down the leg getting worse quickly, raise normal",
        "H-02; SP-4 p4",
        {"other_weakness": "present", "history.progression": "rapid"},
        "emergency",
        edge="escalates",
        rules={"RF-RAPID-PROGRESSION"},
        referrals=[("emergency_department", "emergency", ["mri"])],
    ),
    PolicyCase(
        "weakness further down the leg getting worse slowly",
        "H-02; SP-4 p4",
        {"other_weakness": "present", "history.progression": "progressive"},
        "routine",
        edge="neighbour",
        rules={"LV-PROGRESSIVE-WEAKNESS", "LV-OTHER-WEAKNESS"},
        not_rules={"RF-RAPID-PROGRESSION"},
    ),
    PolicyCase(
        "cancer history with back pain",
        "H-02; SP-6 p3",
        {"history.cancer": "present", "pain.locations": ["low_back"], "pain.severity": 4},
        "urgent",
        rules={"RF-CANCER-BACK-PAIN"},
        top="spinal_metastasis",
        referrals=[("physician", "urgent", ["mri_whole_spine"])],
    ),
    PolicyCase(
        "cancer history with back pain and a weak leg",
        "H-02; H-05; SP-6 p3",
        {"history.cancer": "present", "pain.locations": ["low_back"], "pain.severity": 4, "slr.result": "weak"},
        "emergency",
        rules={"RF-CANCER-NEURO-DEFICIT"},
        top="spinal_metastasis",
        referrals=[("emergency_department", "emergency", ["mri_whole_spine"])],
    ),
    PolicyCase(
        "cancer history alone",
        "H-02; SP-6 p3",
        {"history.cancer": "present"},
        "routine",
        rules={"LV-CANCER-HISTORY"},
    ),
    # --- H-03: trauma (SP-7) ----------------------------------------------------------------------
    PolicyCase(
        "failed raise after a fall, onset not recorded",
        "H-03; SP-7 p1; SP-3 p2",
        {"slr.result": "unable", "history.trauma": "present", "history.onset": None},
        "urgent",
        edge="escalates",
        rules={"RF-TRAUMA-FAILED-RAISE"},
        asks_first="findings.history.onset",
        referrals=[("physician", "urgent", ["x_ray"])],
        final=False,
    ),
    PolicyCase(
        "failed raise with no injury, onset not recorded",
        "H-03; SP-7 p1",
        {"slr.result": "unable", "history.onset": None},
        "routine",
        edge="neighbour",
        not_rules={"RF-TRAUMA-FAILED-RAISE"},
        final=False,
    ),
    PolicyCase(
        "weakness creeping on in the week after a fall",
        "H-03; SP-7 p1",
        {"slr.result": "weak", "history.trauma": "present", "history.progression": "progressive"},
        "urgent",
        rules={"RF-TRAUMA-FAILED-RAISE"},
    ),
    PolicyCase(
        "sudden failed raise after a fall",
        "H-03; SP-7 p1",
        {"slr.result": "unable", "history.trauma": "present", "history.onset": "sudden"},
        "emergency",
        rules={"RF-TRAUMA"},
        causes={"hip_or_pelvic_fracture", "femoral_neuropathy"},
        referrals=[("emergency_department", "emergency", ["x_ray"])],
    ),
    PolicyCase(
        "walking affected after a fall",
        "H-03; SP-7 p2",
        {"history.trauma": "present", "function.walking_affected": "present"},
        "urgent",
        rules={"RF-TRAUMA-WALKING"},
    ),
    PolicyCase(
        "an injury with nothing else abnormal",
        "H-03; SP-7 p4",
        {"history.trauma": "present"},
        "routine",
        rules={"LV-AFTER-INJURY"},
    ),
    # --- H-04: age and the intended population (SP-5, SP-7, SP-8) ---------------------------------
    PolicyCase(
        "85-year-old fall with groin pain and walking affected",
        "H-04; H-02; SP-7 p3",
        {
            "history.trauma": "present",
            "pain.locations": ["groin"],
            "pain.severity": 6,
            "function.walking_affected": "present",
        },
        "emergency",
        patient={"age": 85},
        edge="escalates",
        rules={"RF-OLDER-FALL"},
        top="hip_or_pelvic_fracture",
        not_causes={"hip_flexor_rupture"},
        referrals=[("emergency_department", "emergency", ["x_ray"])],
    ),
    PolicyCase(
        "64-year-old fall with groin pain and walking affected",
        "H-04; SP-7 p2-3",
        {
            "history.trauma": "present",
            "pain.locations": ["groin"],
            "pain.severity": 6,
            "function.walking_affected": "present",
        },
        "urgent",
        patient={"age": 64},
        edge="neighbour",
        rules={"RF-TRAUMA-WALKING"},
        not_rules={"RF-OLDER-FALL"},
    ),
    PolicyCase(
        "78-year-old fell and cannot lift the leg",
        "H-04; H-03; SP-7 p3",
        {"slr.result": "unable", "history.trauma": "present", "history.onset": None},
        "emergency",
        patient={"age": 78},
        rules={"RF-OLDER-FALL"},
        top="hip_or_pelvic_fracture",
    ),
    PolicyCase(
        "fall with groin pain and walking affected, age not recorded",
        "H-04; SP-6 p5; SP-3 p2",
        {
            "history.trauma": "present",
            "pain.locations": ["groin"],
            "pain.severity": 6,
            "function.walking_affected": "present",
        },
        "urgent",
        patient=None,
        asks_first="patient.age",
        scope="unknown",
        final=False,
    ),
    PolicyCase(
        "sudden severe back pain at 72, raise normal",
        "H-04; SP-5 p3",
        {"history.onset": "sudden", "pain.locations": ["low_back"], "pain.severity": 9},
        "urgent",
        patient={"age": 72},
        edge="escalates",
        rules={"RF-OLDER-SUDDEN-BACK-PAIN"},
        causes={"vertebral_fracture", "aortic_aneurysm"},
        referrals=[("physician", "urgent", ["x_ray", "aorta_imaging"])],
    ),
    PolicyCase(
        "sudden severe back pain at 64, raise normal",
        "H-04; SP-5 p3",
        {"history.onset": "sudden", "pain.locations": ["low_back"], "pain.severity": 9},
        "self_care",
        patient={"age": 64},
        edge="neighbour",
        not_rules={"RF-OLDER-SUDDEN-BACK-PAIN"},
    ),
    PolicyCase(
        "groin pain after a fall at 40 counts towards a fracture",
        "H-07; SP-10 p3; SP-7 p4",
        {"history.trauma": "present", "pain.locations": ["groin"], "pain.severity": 4},
        "routine",
        rules={"CA-FRACTURE-AFTER-INJURY", "LV-AFTER-INJURY"},
        top="hip_or_pelvic_fracture",
    ),
    PolicyCase(
        "back pain after a fall at 70",
        "H-04; SP-7 p3",
        {"history.trauma": "present", "pain.locations": ["low_back"], "pain.severity": 6},
        "urgent",
        patient={"age": 70},
        rules={"RF-OLDER-TRAUMA-BACK-PAIN"},
        top="vertebral_fracture",
    ),
    PolicyCase(
        "febrile 7-year-old with groin pain",
        "H-04; SP-8 p2",
        {"systemic.fever": "present", "pain.locations": ["groin"], "pain.severity": 5},
        "emergency",
        patient={"age": 7},
        edge="escalates",
        rules={"RF-CHILD-FEVER-HIP"},
        top="septic_arthritis_hip",
        not_causes={"hip_osteoarthritis"},
        scope="out",
    ),
    PolicyCase(
        "7-year-old with groin pain and no fever",
        "H-04; SP-8 p2",
        {"pain.locations": ["groin"], "pain.severity": 5},
        "routine",
        patient={"age": 7},
        edge="neighbour",
        rules={"LV-CHILD"},
        not_rules={"RF-CHILD-FEVER-HIP"},
        scope="out",
    ),
    PolicyCase(
        "14-year-old with groin pain and a limp, no fever",
        "H-13; SP-8 p2",
        {"pain.locations": ["groin"], "pain.severity": 4, "function.walking_affected": "present"},
        "urgent",
        patient={"age": 14},
        rules={"RF-CHILD-HIP-LIMP"},
        top="slipped_upper_femoral_epiphysis",
        referrals=[("physician", "urgent", ["x_ray"])],
        scope="out",
    ),
    PolicyCase(
        "13-year-old whose raise failed suddenly during a kick",
        "H-13; SP-7 p5",
        {"slr.result": "unable", "history.onset": "sudden", "history.activity_at_onset": "sprint_or_kick"},
        "urgent",
        patient={"age": 13},
        rules={"RF-YOUNG-AVULSION"},
        top="hip_or_pelvic_fracture",
        scope="out",
    ),
    PolicyCase(
        "febrile 24-year-old with groin pain",
        "H-04; SP-6 p1",
        {"systemic.fever": "present", "pain.locations": ["groin"], "pain.severity": 5},
        "urgent",
        patient={"age": 24},
        not_rules={"RF-CHILD-FEVER-HIP"},
        top="septic_arthritis_hip",
    ),
    PolicyCase(
        "a limping child with fever and a normal raise",
        "H-04; SP-8 p2",
        {"systemic.fever": "present", "function.walking_affected": "present"},
        "emergency",
        patient={"age": 15},
        rules={"RF-CHILD-FEVER-HIP"},
        scope="out",
    ),
    # --- H-05: imaging and referrals in an emergency (SP-9) ---------------------------------------
    PolicyCase(
        "an isolated cauda equina red flag has MRI on the emergency referral",
        "H-05; SP-4 p2; SP-9 p2",
        {"saddle_numbness": "present"},
        "emergency",
        edge="escalates",
        referrals=[("emergency_department", "emergency", ["mri"])],
    ),
    PolicyCase(
        "no routine referral beside an emergency",
        "H-05; SP-9 p1",
        {"bladder": "retention", "slr.result": "weak", "sensation": {"status": "reduced", "areas": ["anterior_thigh"]}},
        "emergency",
        rules={"RE-NERVE-WORKUP", "LV-FAILED-LEG-RAISE"},
        referrals=[("emergency_department", "emergency", ["mri"])],
    ),
    PolicyCase(
        "a test is never less urgent than the level",
        "H-05; SP-9 p3",
        {"slr.result": "weak", "pain.locations": ["both_legs", "anterior_thigh"], "pain.severity": 5},
        "urgent",
        edge="neighbour",
        rules={"RE-NERVE-WORKUP", "RF-PAIN-BOTH-LEGS"},
        referrals=[("neurologist", "urgent", ["mri", "nerve_conduction_study"])],
    ),
    # --- H-06: over-triage of weight loss (SP-6 p2) ------------------------------------------------
    PolicyCase(
        "weight loss with a raise stopped by hip pain (osteoarthritis)",
        "H-06; SP-6 p2",
        {
            "systemic.weight_loss": "present",
            "slr.result": "pain_limited",
            "hip.range_reduced": "present",
            "pain.locations": ["front_of_hip"],
            "pain.severity": 5,
        },
        "routine",
        edge="neighbour",
        not_rules={"RF-SYSTEMIC-WEIGHT-LOSS"},
        top="hip_osteoarthritis",
    ),
    PolicyCase(
        "weight loss with a weak raise",
        "H-06; SP-6 p2",
        {"systemic.weight_loss": "present", "slr.result": "weak"},
        "emergency",
        edge="escalates",
        rules={"RF-SYSTEMIC-WEIGHT-LOSS"},
    ),
    # --- H-07: ranking and wording of causes (SP-10) ----------------------------------------------
    PolicyCase(
        "catching or locking puts the labral tear first",
        "H-07; SP-10 p1-2",
        {"hip.catching_or_locking": "present", "slr.result": "pain_limited", "hip.front_tenderness": "present"},
        "routine",
        edge="escalates",
        top="labral_tear",
    ),
    PolicyCase(
        "a sudden inability without a sprint or kick does not put a tear first",
        "H-07; SP-10 p2; SP-5 p5",
        {"slr.result": "unable", "history.onset": "sudden"},
        "urgent",
        edge="neighbour",
        rules={"CA-RUPTURE-SUDDEN-INABILITY"},
        not_rules={"CA-RUPTURE-AFTER-SPRINT-OR-KICK"},
        top="upper_lumbar_radiculopathy",
    ),
    PolicyCase(
        "a sudden inability during a kick puts the tear first",
        "H-07; SP-10 p2; SP-5 p5",
        {"slr.result": "unable", "history.onset": "sudden", "history.activity_at_onset": "sprint_or_kick"},
        "urgent",
        edge="escalates",
        rules={"CA-RUPTURE-AFTER-SPRINT-OR-KICK"},
        top="hip_flexor_rupture",
    ),
    PolicyCase(
        "reduced hip movement at 60 adds to osteoarthritis",
        "H-07; SP-10 p3",
        {"hip.range_reduced": "present"},
        "routine",
        patient={"age": 60},
        rules={"CA-HIP-OSTEOARTHRITIS-AGE"},
        top="hip_osteoarthritis",
    ),
    PolicyCase(
        "a fitness-only cause comes after the clinical ones when urgent",
        "H-07; SP-10 p2",
        {"hip.clicking": "present", "pain.locations": ["both_legs"], "pain.severity": 4},
        "urgent",
        top="cauda_equina_syndrome",
        causes={"snapping_hip"},
    ),
    # --- H-08: cauda equina red flags (SP-4) -------------------------------------------------------
    PolicyCase(
        "retention with a normal raise",
        "H-08; SP-4 p1; SP-11 p3",
        {"bladder": "retention"},
        "emergency",
        edge="escalates",
        rules={"RF-CES-BLADDER"},
        not_rules={"LV-BASELINE"},
    ),
    PolicyCase(
        "saddle numbness not asked: no self-care before the screen",
        "H-08; H-11; SP-3 p3",
        {"saddle_numbness": None},
        "routine",
        edge="escalates",
        rules={"LV-CES-SCREEN-NOT-DONE"},
        asks_first="findings.saddle_numbness",
        final=False,
    ),
    PolicyCase(
        "bladder normal, everything else normal",
        "H-08; SP-4 p1",
        {},
        "self_care",
        edge="neighbour",
        rules={"LV-BASELINE"},
    ),
]


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
    """SP-3 p3: 'incomplete' never hides an urgent level behind a label."""
    result = triage({"slr": {"result": "weak", "side": "both"}}, ADULT)
    assert result["triage"]["incomplete"] is True
    assert (result["triage"]["level"], result["triage"]["label"]) == ("urgent", "Urgent")


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
