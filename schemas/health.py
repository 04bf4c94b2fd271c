from marshmallow import fields

from schemas.base import StrictSchema, string
from schemas.triage import KnowledgeRef


class Health(StrictSchema):
    status = string("pass")


class Readiness(Health):
    knowledge = fields.Nested(KnowledgeRef, required=True)
