"""GET /v1/citations/{citation_id}: one citation, with its passage when the source text is at hand."""

from marshmallow import fields

from schemas.base import boolean, integer, string
from schemas.triage import CitationOut


def _when_available(description: str) -> fields.String:
    return fields.String(metadata={"description": description + " Only when text_available is true."})


class CitationPassage(CitationOut):
    paragraph_start = integer("Where the cited paragraph starts: character offset into the text (inclusive).")
    paragraph_end = integer("Where it ends (exclusive). The passage, start to end, lies inside it.")
    text_available = boolean(
        "True when the server holds the source text and the passage's SHA-256 matches the citation's: passage, "
        "passage_sha256 and paragraph_text are then given. False when the source texts are not configured "
        "(TRIAGE_SOURCE_TEXTS_DIR) or do not hold this source: only the locator is shown, and message says why."
    )
    message = string("What is shown, or why the text is not.")
    passage = _when_available("The cited words: characters start to end of the source text.")
    passage_sha256 = _when_available("SHA-256 of the passage's UTF-8 bytes, computed now: equal to sha256.")
    paragraph_text = _when_available("The whole paragraph around the passage (paragraph_start to paragraph_end).")
