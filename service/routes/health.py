"""GET /livez (the process answers) and /readyz (the knowledge base is loaded)."""

from typing import Any

from schemas.health import Health, Readiness
from service.routes import knowledge_base
from service.smorest import Blueprint

blp = Blueprint("health", __name__, description="Probes for process managers and orchestrators.")


@blp.route("/livez", methods=["GET"])
@blp.response(200, Health)
@blp.doc(operationId="livez")
def livez() -> dict[str, Any]:
    """Liveness: the process answers"""
    return {"status": "pass"}


@blp.route("/readyz", methods=["GET"])
@blp.response(200, Readiness)
@blp.doc(operationId="readyz")
def readyz() -> dict[str, Any]:
    """Readiness: the knowledge base is loaded and validated"""
    kb = knowledge_base()
    return {"status": "pass", "knowledge": {"version": kb.version, "sha256": kb.sha256}}
