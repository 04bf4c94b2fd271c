"""POST /v1/triage."""

from typing import Any

import flask

from schemas.examples import TRIAGE_REQUEST
from schemas.triage import TriageRequest, TriageResponse
from service.audit import audit_decision
from service.engine import evaluate
from service.knowledge import load_knowledge
from service.problem import Blueprint
from service.routes import knowledge_base

blp = Blueprint("triage", __name__, url_prefix="/v1", description="Evaluate exam findings.")


@blp.route("/triage", methods=["POST"])
@blp.arguments(TriageRequest, example=TRIAGE_REQUEST)
@blp.response(200, TriageResponse, example=evaluate(load_knowledge(), TRIAGE_REQUEST))
@blp.alt_response(400, response="BAD_REQUEST", description="Malformed JSON body.")
@blp.alt_response(413, response="REQUEST_ENTITY_TOO_LARGE", description="Body larger than 64 KiB.")
@blp.alt_response(415, response="UNSUPPORTED_MEDIA_TYPE", description="Body not sent as application/json.")
@blp.doc(operationId="triage")
def triage(body: dict[str, Any]) -> dict[str, Any]:
    """Triage a patient from exam findings

    Returns the level, ranked causes, referrals, advice, the questions still to ask and the
    rule trace. Deterministic: the same findings and knowledge version give the same answer.
    """
    result = evaluate(knowledge_base(), body)
    audit_decision("api", body, result, flask.current_app.config["AUDIT_HASH_KEY"])
    return result
