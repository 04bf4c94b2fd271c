"""GET /v1/sources and /v1/sources/{source_id}: the cited texts, by fingerprint and layout (never their words)."""

from typing import Any

from flask_smorest import abort

from schemas.knowledge import SourceDetail, SourceList
from service.routes import knowledge_base
from service.smorest import Blueprint

blp = Blueprint("sources", __name__, url_prefix="/v1", description="The source texts the knowledge base cites.")


@blp.route("/sources", methods=["GET"])
@blp.response(200, SourceList)
@blp.doc(operationId="listSources")
def list_sources() -> dict[str, Any]:
    """Every source with its kind, authority, SHA-256 and sections"""
    return {"sources": list(knowledge_base().sources)}


@blp.route("/sources/<string(maxlength=16):source_id>", methods=["GET"])
@blp.response(200, SourceDetail)
@blp.alt_response(404, response="NOT_FOUND")
@blp.doc(operationId="getSource")
def get_source(source_id: str) -> dict[str, Any]:
    """One source, with the knowledge base's citations into it"""
    kb = knowledge_base()
    source = next((s for s in kb.sources if s["id"] == source_id), None)
    if source is None:
        abort(404, message="No source with that id; GET /v1/sources lists them.")
    return {**source, "citations": {cid: c.locator() for cid, c in kb.citations.items() if c.source == source_id}}
