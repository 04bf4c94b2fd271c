"""POST /v1/triage: request and response."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from schemas.base import StrictSchema, boolean, choice, choice_list, integer, many, string, strings, tri

SENSORY_AREAS = ("anterior_thigh", "groin", "inner_thigh", "genital", "posterior_leg", "lower_leg", "foot")
PAIN_LOCATIONS = ("low_back", "front_of_hip", "groin", "anterior_thigh", "posterior_leg", "both_legs")
LEVELS = ("emergency", "urgent", "routine", "self_care")
TESTS = ("mri", "mri_whole_spine", "x_ray", "aorta_imaging", "blood_tests", "nerve_conduction_study")


# --- request ------------------------------------------------------------------------------------
class Patient(StrictSchema):
    age = fields.Integer(
        strict=True,
        validate=validate.Range(0, 130),
        metadata={
            "description": "Age in years. Omitted means unknown: rules that depend on age wait for it. "
            "The intended population is adults 16 and over (see scope in the answer)."
        },
    )
    sex = choice(("female", "male", "other", "unknown"), "Sex. Recorded; no rule uses it in this version.")


class StraightLegRaise(StrictSchema):
    result = choice(
        ("normal", "weak", "unable", "pain_limited", "not_tested"),
        "Active straight leg raise lying on the back. not_tested counts as unknown.",
    )
    side = choice(("left", "right", "both"), "Side of the failed raise.")


class Sensation(StrictSchema):
    status = choice(("normal", "reduced", "absent", "unknown"), "Skin sensation in the legs.")
    areas = choice_list(
        SENSORY_AREAS,
        "Where sensation is reduced or absent. Groin, inner thigh and genital "
        "count as saddle-area numbness. Not allowed with status normal.",
    )

    class Meta(StrictSchema.Meta):
        openapi_rules = {  # _areas_need_abnormal_status, for the OpenAPI document
            "not": {
                "required": ["status", "areas"],
                "properties": {"status": {"enum": ["normal"]}, "areas": {"minItems": 1}},
            }
        }

    @validates_schema
    def _areas_need_abnormal_status(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("status") == "normal" and data.get("areas"):
            raise ValidationError("Areas of abnormal sensation contradict status normal.", "areas")


class Pain(StrictSchema):
    locations = choice_list(PAIN_LOCATIONS, "Where the pain is; the list is taken as complete.")
    severity = fields.Integer(
        strict=True, validate=validate.Range(0, 10), metadata={"description": "0 (none) to 10 (worst)."}
    )
    unrelenting = tri("Constant pain not eased by rest or position.")
    night = tri("Pain that wakes the patient or is worst at night.")


class History(StrictSchema):
    onset = choice(("sudden", "gradual", "unknown"), "How the problem began.")
    progression = choice(("improving", "stable", "progressive", "rapid", "unknown"), "Course since onset.")
    trauma = tri("Began after a fall, blow or other injury.")
    activity_at_onset = choice(
        ("sprint_or_kick", "leg_raise_exercise", "other", "unknown"), "What the patient was doing when it began."
    )
    prolonged_sitting = tri("Long periods of sitting.")
    recent_immobility = tri("Recent inactivity, for example after surgery.")
    cancer = tri("A history of cancer, however long ago.")


class Systemic(StrictSchema):
    fever = tri("Fever (38 C or more) or feeling hot and shivery.")
    weight_loss = tri("Unexplained weight loss.")


class Hip(StrictSchema):
    clicking = tri("Clicking or snapping of the hip.")
    catching_or_locking = tri("Catching or locking of the hip.")
    range_reduced = tri("Reduced hip range of movement.")
    front_tenderness = tri("Tenderness at the front of the hip or groin.")


class Function(StrictSchema):
    walking_affected = tri("Walking or daily activities clearly affected, including a new limp.")
    back_arches_on_lift = tri("The lower back arches when the leg is lifted.")


class Findings(StrictSchema):
    slr = fields.Nested(StraightLegRaise)
    sensation = fields.Nested(Sensation)
    saddle_numbness = tri("New or worse numbness of the groin, inner thighs or genitals.")
    bladder = choice(("normal", "retention", "incontinence", "unknown"), "Bladder function.")
    bowel = choice(("normal", "incontinence", "unknown"), "Bowel control.")
    pain = fields.Nested(Pain)
    history = fields.Nested(History)
    systemic = fields.Nested(Systemic)
    hip = fields.Nested(Hip)
    function = fields.Nested(Function)
    other_weakness = tri("Weakness elsewhere in the leg: knee, ankle or foot (for example a foot drop).")


class TriageRequest(StrictSchema):
    patient = fields.Nested(Patient)
    findings = fields.Nested(
        Findings,
        required=True,
        metadata={"description": "Exam findings. Every omitted finding is unknown, never absent."},
    )


# --- response -----------------------------------------------------------------------------------
class CitationOut(StrictSchema):
    id = string(
        "The citation's id in the knowledge base's catalog (e.g. 000.seek.ces_bladder_bowel): "
        "GET /v1/citations/{citation_id} shows the passage."
    )
    source = string("Source id (see /v1/sources).")
    title = string("The source's title (the project's own description of it, not the text's words).")
    file = string()
    kind = string("What kind of text the source is.")
    authority = choice(
        ("clinical", "fitness", "service_policy"),
        "clinical: explanatory clinical article; fitness: fitness material (never raises the level on its own); "
        "service_policy: the service's own clinical policy (docs/clinical-safety/policy.md), where the texts "
        "are silent or their condition is not met.",
        required=True,
    )
    section = string("Section id within the source.")
    heading = string(
        "The section's heading as the source gives it (a long one cut to nine words and an ellipsis); null for "
        "text before the source's first heading.",
        allow_none=True,
    )
    paragraph = integer("1-based, within the section.")
    start = integer("Character offset into the text (inclusive).")
    end = integer("Character offset (exclusive).")
    sha256 = string("SHA-256 of the span's UTF-8 bytes.")


class TriageLevel(StrictSchema):
    level = choice(LEVELS, "Most to least urgent: emergency, urgent, routine, self_care.", required=True)
    label = string()
    action = string()
    provisional = boolean("True when an unknown finding could, if abnormal, raise the level (see missing).")
    incomplete = boolean(
        "True when no red-flag question has been answered and nothing more urgent than routine was found: the "
        "answer is then not a triage decision, and label and action say so (policy SP-3 p3). An urgent or "
        "emergency level found before any red-flag answer is a decision: false, with its own label."
    )
    rules = strings("Rules that set the level.")
    citations = many(CitationOut)


class CauseOut(StrictSchema):
    id = string()
    name = string()
    about = string()
    strength = choice(
        ("strong", "moderate", "weak"),
        "How well the findings fit (policy SP-10), not a probability: strong needs a discriminating sign and a "
        "score of 3 or more, moderate a score of 2 or more.",
        required=True,
    )
    score = integer(
        "Net weight of the evidence (3 discriminating, 2 typical, 1 compatible; negative against); "
        "only causes scoring above 0 are listed."
    )
    supporting = strings("Finding paths for.")
    conflicting = strings("Finding paths against.")
    rules = strings("Rules that weighed on it, for or against.")
    rules_against = strings("Those of them that counted against it.")
    citations = many(CitationOut, "The cause's own description and the rules that supported it in this answer.")


class ReferralOut(StrictSchema):
    to = choice(
        ("emergency_department", "physician", "neurologist", "orthopedist", "physical_therapist", "self_management"),
        "Who should see the patient.",
        required=True,
    )
    urgency = choice(("emergency", "urgent", "routine", "if_persistent", "self_care"), "How soon.", required=True)
    tests = fields.List(
        fields.String(validate=validate.OneOf(TESTS)),
        required=True,
        metadata={"description": "Tests to arrange, at the referral's urgency (never below the level)."},
    )
    rules = strings()
    citations = many(CitationOut)


class AdviceOut(StrictSchema):
    id = string()
    text = string()
    rules = strings()
    citations = many(CitationOut)


class MissingOut(StrictSchema):
    field = string("Request path of the unknown finding.")
    question = string()
    could_raise_to = choice(LEVELS, "The most urgent level an abnormal answer could lead to.", required=True)
    rules = strings("Rules waiting on it.")


class Matched(StrictSchema):
    field = string()
    value = fields.Raw(
        required=True,
        allow_none=True,
        metadata={
            "description": "The reported value (string, integer or list); null when the rule fired because the "
            "finding is unknown (no self-care before the cauda equina screen, policy SP-3)."
        },
    )


class TraceOut(StrictSchema):
    rule = string()
    statement = string()
    matched = many(Matched)


class ScopeOut(StrictSchema):
    population = choice(
        ("in", "out", "unknown"),
        "The patient's age against the intended population (adults 16 and over): in, out (under 16) or unknown.",
        required=True,
    )
    note = string("What that means for this answer.")
    citations = many(CitationOut)


class ConflictOut(StrictSchema):
    id = string()
    statement = string()
    findings = strings("The findings that contradict.")
    read_as_unknown = strings("Findings whose normal reading was set aside as unknown (policy SP-3).")
    citations = many(CitationOut)


class KnowledgeRef(StrictSchema):
    version = string()
    sha256 = string("SHA-256 over the canonical knowledge base.")


class TriageResponse(StrictSchema):
    triage = fields.Nested(TriageLevel, required=True)
    scope = fields.Nested(
        ScopeOut, required=True, metadata={"description": "The intended population and this patient."}
    )
    causes = many(CauseOut, "Candidate causes the findings support, most specific evidence first (policy SP-10).")
    referrals = many(ReferralOut)
    advice = many(AdviceOut)
    missing = many(MissingOut, "Questions still to ask, those whose answer alone could raise the level first.")
    conflicts = many(ConflictOut, "Findings that contradict each other.")
    trace = many(TraceOut, "Every rule that fired.")
    knowledge = fields.Nested(KnowledgeRef, required=True)
    disclaimer = string()
