from marshmallow import fields

from schemas.base import StrictSchema
from schemas.triage import KnowledgeRef


class Health(StrictSchema):
    status = fields.String(required=True, metadata={"description": "pass"})


class Readiness(Health):
    knowledge = fields.Nested(KnowledgeRef, required=True)
