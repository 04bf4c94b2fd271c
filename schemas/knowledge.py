"""GET /v1/knowledge, /v1/rules/{id}, /v1/sources, /v1/sources/{id}."""

from marshmallow import fields

from schemas.base import StrictSchema, choice
from schemas.triage import CitationOut, KnowledgeRef


class LevelDoc(StrictSchema):
    id = fields.String(required=True)
    rank = fields.Integer(required=True, metadata={"description": "0 is the most urgent."})
    label = fields.String(required=True)
    action = fields.String(required=True)
    referral = fields.String(required=True)


class RuleCause(StrictSchema):
    id = fields.String(required=True)
    weight = fields.Integer(required=True)


class RuleReferral(StrictSchema):
    to = fields.String(required=True)
    urgency = fields.String(required=True)
    tests = fields.List(fields.String(), required=True)


class RuleDoc(StrictSchema):
    id = fields.String(required=True)
    statement = fields.String(required=True, metadata={"description": "The rule in plain words."})
    when = fields.Dict(required=True, metadata={"description": "The condition as written in the knowledge base."})
    level = fields.String(allow_none=True, required=True)
    causes = fields.List(fields.Nested(RuleCause), required=True)
    referrals = fields.List(fields.Nested(RuleReferral), required=True)
    advice = fields.List(fields.String(), required=True)
    citations = fields.List(fields.Nested(CitationOut), required=True)


class CauseDoc(StrictSchema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    about = fields.String(required=True)
    citations = fields.List(fields.Nested(CitationOut), required=True)


class AdviceDoc(StrictSchema):
    id = fields.String(required=True)
    text = fields.String(required=True)
    up_to = fields.String(required=True, metadata={"description": "Most urgent level at which it is shown."})
    citations = fields.List(fields.Nested(CitationOut), required=True)


class FindingDoc(StrictSchema):
    field = fields.String(required=True)
    kind = fields.String(required=True)
    values = fields.List(fields.Raw(), required=True)
    question = fields.String(required=True)


class IntendedUseDoc(StrictSchema):
    population = fields.String(required=True)
    min_age = fields.Integer(required=True)
    notes = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={
            "description": "The note an answer carries for a patient in the population, out of it, or of unknown age."
        },
    )
    citations = fields.List(fields.Nested(CitationOut), required=True)
    document = fields.String(required=True, metadata={"description": "The intended-use statement in the repository."})


class AuthorityDoc(StrictSchema):
    id = choice(("clinical", "fitness", "service_policy"), "An authority a citation can name.", required=True)
    meaning = fields.String(required=True)


class ConflictDoc(StrictSchema):
    id = fields.String(required=True)
    statement = fields.String(required=True)
    read_as_unknown = fields.List(fields.String(), required=True)
    citations = fields.List(fields.Nested(CitationOut), required=True)


class Knowledge(KnowledgeRef):
    intended_use = fields.Nested(IntendedUseDoc, required=True)
    authorities = fields.List(fields.Nested(AuthorityDoc), required=True)
    levels = fields.List(fields.Nested(LevelDoc), required=True)
    findings = fields.List(fields.Nested(FindingDoc), required=True)
    rules = fields.List(fields.Nested(RuleDoc), required=True)
    causes = fields.List(fields.Nested(CauseDoc), required=True)
    advice = fields.List(fields.Nested(AdviceDoc), required=True)
    conflicts = fields.List(fields.Nested(ConflictDoc), required=True)


class Section(StrictSchema):
    id = fields.String(required=True)
    heading = fields.String(required=True, allow_none=True)
    start = fields.Integer(required=True)
    end = fields.Integer(required=True)
    paragraphs = fields.List(
        fields.List(fields.Integer()),
        required=True,
        metadata={"description": "[start, end) offsets of each paragraph."},
    )


class Source(StrictSchema):
    id = fields.String(required=True)
    file = fields.String(required=True)
    held = choice(
        ("texts", "project"),
        "texts: a published text the operator provides (TRIAGE_SOURCE_TEXTS_DIR); project: the service's own "
        "clinical policy, kept in this repository (docs/clinical-safety/policy.md).",
        required=True,
    )
    title = fields.String(required=True)
    kind = fields.String(required=True)
    authority = fields.String(required=True)
    sha256 = fields.String(required=True, metadata={"description": "SHA-256 of the whole file."})
    length = fields.Integer(required=True, metadata={"description": "Length in characters."})
    sections = fields.List(fields.Nested(Section), required=True)


class SourceList(StrictSchema):
    sources = fields.List(fields.Nested(Source), required=True)


class SourceDetail(Source):
    citations = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(CitationOut),
        required=True,
        metadata={"description": "The knowledge base's citations into this source, by id."},
    )
