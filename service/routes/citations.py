"""GET /v1/citations/{citation_id}: a citation's locator and, when the source text is at hand, its passage."""

from typing import Any

from flask_smorest import abort

from schemas.citations import CitationPassage
from service.knowledge import load_knowledge
from service.knowledge.passages import passage_view
from service.routes import knowledge_base, source_texts
from service.smorest import Blueprint

blp = Blueprint("citations", __name__, url_prefix="/v1", description="The cited passages behind every decision.")
EXAMPLE_ID = "000.seek.ces_bladder_bowel"


@blp.route("/citations/<string(maxlength=64):citation_id>", methods=["GET"])
# The example is what a server without the source texts answers: the project never holds their words.
@blp.response(200, CitationPassage, example=passage_view(load_knowledge(), {}, EXAMPLE_ID))
@blp.alt_response(404, response="NOT_FOUND")
@blp.doc(operationId="getCitation")
def citation(citation_id: str) -> dict[str, Any]:
    """One citation: its locator, source title and section heading and, with the source texts, its passage

    The id is the one every citation in an answer carries (for example 000.seek.ces_bladder_bowel).
    When the server holds the source texts (TRIAGE_SOURCE_TEXTS_DIR, verified at start-up) it adds
    the cited passage, its SHA-256 (equal to the citation's) and the paragraph around it; without
    them the answer is still 200, with text_available false and a message saying why.
    """
    found = passage_view(knowledge_base(), source_texts(), citation_id)
    if found is None:
        abort(404, message="No citation with that id; every citation in an answer, and GET /v1/knowledge, names one.")
    return found
