"""The compact shape of answers (request header `Prefer: citations=compact`): citations by id, each once.

Each cited item's `citations` lists ids; the top-level `citations` object maps each id to the citation as
the default answer shows it, without the `id` (its key). The schemas mirror schemas/triage.py and
schemas/batch.py, item by item.
"""

from __future__ import annotations

from marshmallow import fields

from schemas.base import StrictSchema, many, strings
from schemas.batch import BatchResponse, BatchResult
from schemas.triage import (
    AdviceOut,
    CauseOut,
    CitationOut,
    ConflictOut,
    ReferralOut,
    ScopeOut,
    TriageLevel,
    TriageResponse,
)

PREFER_HEADER = {
    "in": "header",
    "name": "Prefer",
    "required": False,
    "schema": {"type": "string"},
    "example": "citations=compact",
    "description": (
        "RFC 7240 preferences. `citations=compact` asks for each citation once: every cited item's "
        "`citations` then lists citation ids, and a top-level `citations` object maps each id to the citation "
        "without its id (in a batch, one map for all its answers). A response that applied it carries "
        "`Preference-Applied: citations=compact`; without it, or with any other preference, the answer has "
        "the default shape."
    ),
}
PREFERENCE_APPLIED = {
    "Preference-Applied": {
        "description": "`citations=compact` when the answer has the compact shape; absent otherwise.",
        "schema": {"type": "string"},
    }
}


# A citation in the map: CitationOut's fields but the id, in the same order.
CitationEntry = StrictSchema.from_dict(
    {name: field for name, field in CitationOut._declared_fields.items() if name != "id"}, name="CitationEntry"
)


def _ids() -> fields.List:
    return strings("Citation ids: each a key of the top-level `citations` object.")


def _map(description: str) -> fields.Dict:
    return fields.Dict(
        keys=fields.String(),
        values=fields.Nested(CitationEntry),
        required=True,
        metadata={"description": description},
    )


class TriageLevelCompact(TriageLevel):
    citations = _ids()


class ScopeCompact(ScopeOut):
    citations = _ids()


class CauseCompact(CauseOut):
    citations = _ids()


class ReferralCompact(ReferralOut):
    citations = _ids()


class AdviceCompact(AdviceOut):
    citations = _ids()


class ConflictCompact(ConflictOut):
    citations = _ids()


class CompactAnswerBody(TriageResponse):
    """An answer whose cited items name their citations by id (the map is elsewhere: in a batch, its top level)."""

    triage = fields.Nested(TriageLevelCompact, required=True)
    scope = fields.Nested(ScopeCompact, required=True)
    causes = many(CauseCompact, "As in the default answer, citations by id.")
    referrals = many(ReferralCompact)
    advice = many(AdviceCompact)
    conflicts = many(ConflictCompact, "Findings that contradict each other.")


class TriageResponseCompact(CompactAnswerBody):
    citations = _map("Every citation the answer names, once, by id: as the default answer shows it, but the id.")


class BatchResultCompact(BatchResult):
    answer = fields.Nested(
        CompactAnswerBody,
        metadata={"description": "The case's compact answer; its citation ids are keys of the batch's `citations`."},
    )


class BatchResponseCompact(BatchResponse):
    results = many(BatchResultCompact, "One per case, in request order.")
    citations = _map("Every citation any answer names, once, by id: as the default answer shows it, but the id.")
