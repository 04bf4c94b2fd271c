"""A citation with its passage: the locator always, the cited words when the text is at hand and verified.

The published texts are the operator's (TRIAGE_SOURCE_TEXTS_DIR), read and verified at start-up; the
service's own policy is in this repository. Nothing here is kept in the project: the words come from
the texts at run time, and only when the span's SHA-256 is the one the citation records.
"""

from __future__ import annotations

from typing import Any

from service.engine.model import Citation, KnowledgeBase
from service.knowledge.texts import sha256

SHOWN = "The passage and its paragraph, read from the source text; the passage's SHA-256 equals the citation's."
NOT_CONFIGURED = (
    "Text not available: the source texts are not configured on this server (TRIAGE_SOURCE_TEXTS_DIR), so only "
    "the locator is shown: characters start to end of the source file, whose SHA-256 GET /v1/sources/{id} gives."
)
NO_POLICY = (
    "Text not available: this installation does not hold the service's clinical policy as cited "
    "(docs/clinical-safety/policy.md in the repository), so only the locator is shown."
)
MISMATCH = "Text not available: the text at hand does not match the citation's SHA-256, so it is not shown."


def passage_view(kb: KnowledgeBase, texts: dict[str, str], citation_id: str) -> dict[str, Any] | None:
    """The citation's locator, its paragraph's offsets and, when `texts` holds its source and the span's
    SHA-256 matches, the passage and the whole paragraph around it. None for an unknown id."""
    cit = kb.citations.get(citation_id)
    if cit is None:
        return None
    first, last = paragraph_span(kb, cit)
    view = {**cit.locator(), "paragraph_start": first, "paragraph_end": last}
    text = texts.get(cit.source)
    if text is None:
        held = next(s for s in kb.sources if s["id"] == cit.source).get("held")
        return {**view, "text_available": False, "message": NO_POLICY if held == "project" else NOT_CONFIGURED}
    passage = text[cit.start : cit.end]
    digest = sha256(passage)
    if digest != cit.sha256:
        return {**view, "text_available": False, "message": MISMATCH}
    return {
        **view,
        "text_available": True,
        "message": SHOWN,
        "passage": passage,
        "passage_sha256": digest,
        "paragraph_text": text[first:last],
    }


def paragraph_span(kb: KnowledgeBase, cit: Citation) -> tuple[int, int]:
    """[start, end) of the paragraph the citation is in (sources.yaml; the loader checked it holds the span)."""
    source = next(s for s in kb.sources if s["id"] == cit.source)
    section = next(s for s in source["sections"] if s["id"] == cit.section)
    first, last = section["paragraphs"][cit.paragraph - 1]
    return first, last
