"""POST /v1/triage/batch: many TriageRequest bodies in, one answer or problem per case out."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.base import StrictSchema, integer, many
from schemas.examples import TRIAGE_REQUEST
from schemas.problem import Problem
from schemas.triage import KnowledgeRef, TriageResponse

# What openapi.yaml states as maxItems: DefaultConfig.BATCH_MAX_CASES (a test keeps the two equal).
# The service enforces the configured TRIAGE_BATCH_MAX_CASES, not this constant.
DEFAULT_MAX_CASES = 500


class BatchRequest(StrictSchema):
    # Items pass through as sent (null and non-objects too): each is loaded with TriageRequest on its
    # own, so one bad case is rejected in its result instead of failing the whole request.
    cases = fields.List(
        fields.Raw(
            allow_none=True,
            metadata={"description": "A POST /v1/triage body (TriageRequest), validated on its own."},
        ),
        required=True,
        validate=validate.Length(min=1, error="Send at least one case."),
        metadata={
            "description": (
                "The cases, each a TriageRequest body. At most TRIAGE_BATCH_MAX_CASES "
                f"({DEFAULT_MAX_CASES} by default) per request."
            ),
            "maxItems": DEFAULT_MAX_CASES,
        },
    )


class BatchResult(StrictSchema):
    index = integer("0-based position of the case in `cases`.")
    status = fields.Integer(
        required=True,
        validate=validate.OneOf((200, 422)),
        metadata={"description": "200: answered (see answer); 422: rejected (see problem)."},
    )
    answer = fields.Nested(TriageResponse, metadata={"description": "What POST /v1/triage answers for the case."})
    problem = fields.Nested(
        Problem,
        metadata={"description": "The 422 problem POST /v1/triage gives for the case, without request_id."},
    )

    class Meta(StrictSchema.Meta):
        openapi_rules = {  # exactly one of answer and problem, matching status
            "oneOf": [
                {"required": ["answer"], "properties": {"status": {"enum": [200]}}, "not": {"required": ["problem"]}},
                {"required": ["problem"], "properties": {"status": {"enum": [422]}}, "not": {"required": ["answer"]}},
            ]
        }


class BatchResponse(StrictSchema):
    results = many(BatchResult, "One per case, in request order.")
    answered = integer("Results with status 200.")
    rejected = integer("Results with status 422.")
    knowledge = fields.Nested(
        KnowledgeRef, required=True, metadata={"description": "The knowledge base every answer was given with."}
    )


# The OpenAPI example: one case answered, one rejected (a typo'd finding). The route module computes
# the example response from it with the engine, as it does for POST /v1/triage.
BATCH_REQUEST = {"cases": [TRIAGE_REQUEST, {"findings": {"bladdr": "retention"}}]}
