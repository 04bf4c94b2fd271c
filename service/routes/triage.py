"""POST /v1/triage and POST /v1/triage/batch."""

from typing import Any

import flask
import orjson
from flask_smorest import abort
from marshmallow import ValidationError

from schemas.batch import BATCH_REQUEST, BatchRequest, BatchResponse
from schemas.compact import PREFER_HEADER, PREFERENCE_APPLIED, BatchResponseCompact, TriageResponseCompact
from schemas.examples import TRIAGE_REQUEST
from schemas.triage import TriageRequest, TriageResponse
from service.audit import audit_decision
from service.compact import PREFERENCE, compact_answer, compact_batch, wants_compact
from service.engine import evaluate
from service.engine.model import KnowledgeBase
from service.errors import validation_problem
from service.knowledge import load_knowledge
from service.routes import KNOWLEDGE, knowledge_base
from service.smorest import Blueprint
from service.validation import ACCEPTORS, Acceptors, load

blp = Blueprint("triage", __name__, url_prefix="/v1", description="Evaluate exam findings.")
BATCH_TOO_LARGE = "Body larger than BATCH_MAX_CONTENT_LENGTH (4 MiB by default)."


def example(data: Any) -> Any:
    """A response example as a fresh JSON tree: answers share citation objects, which yaml.safe_dump
    would write into openapi.yaml as &id anchors and *id aliases."""
    return orjson.loads(orjson.dumps(data))


def json_response(data: Any, compact: bool = False) -> flask.Response:
    """The engine's answer as JSON, encoded by orjson (key order kept, UTF-8) in microseconds, not tens.
    It is already in the response schema's shape, so marshmallow's dump is skipped (tests/test_validation.py
    shows the dump would return it unchanged). Its shape depends on the Prefer header (service/compact.py)."""
    response = flask.Response(orjson.dumps(data), mimetype="application/json")
    response.headers["Vary"] = "Prefer"  # a fresh response: nothing else has set Vary yet
    if compact:
        response.headers["Preference-Applied"] = PREFERENCE
    return response


def compact_wanted() -> bool:
    """Whether the request's Prefer header asks for compact citations."""
    return wants_compact(flask.request.environ.get("HTTP_PREFER"))


def answers(default: type, compact: type) -> dict[str, Any]:
    """A 200 response's schema: the default shape, or the compact one when `Prefer: citations=compact` applied."""
    return {"oneOf": [default, compact]}


# Schema instances, not classes: webargs would build a new schema (deep-copying its fields) on
# every call from a class, which cost more than validating the body. Loading is thread-safe.
TRIAGE_REQUEST_SCHEMA = TriageRequest()
BATCH_REQUEST_SCHEMA = BatchRequest()


@blp.route("/triage", methods=["POST"])
@blp.arguments(TRIAGE_REQUEST_SCHEMA, example=TRIAGE_REQUEST)
@blp.response(
    200,
    answers(TriageResponse, TriageResponseCompact),
    example=example(evaluate(load_knowledge(), TRIAGE_REQUEST)),  # the default shape (OpenAPI 3.0: one of
    # example and examples; tests/test_compact.py checks the compact shape of the same answer)
    headers=PREFERENCE_APPLIED,
    returns_response=True,
)
@blp.alt_response(400, response="BAD_REQUEST", description="Malformed JSON body.")
@blp.alt_response(413, response="REQUEST_ENTITY_TOO_LARGE", description="Body larger than 64 KiB.")
@blp.alt_response(415, response="UNSUPPORTED_MEDIA_TYPE", description="Body not sent as application/json.")
@blp.doc(operationId="triage", parameters=[PREFER_HEADER])
def triage(body: dict[str, Any]) -> flask.Response:
    """Triage a patient from exam findings

    Returns the level, ranked causes, referrals, advice, the questions still to ask and the
    rule trace. Deterministic: the same findings and knowledge version give the same answer.
    With `Prefer: citations=compact` each citation comes once, in the top-level `citations`
    object, and cited items list ids (TriageResponseCompact); the default is TriageResponse.
    """
    app = flask.current_app._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup, not two
    result = evaluate(app.extensions[KNOWLEDGE], body)
    audit_decision("api", body, result, app.config["AUDIT_HASH_KEY"])
    if compact_wanted():
        return json_response(compact_answer(result), compact=True)
    return json_response(result)  # already in TriageResponse's shape: no dump needed


def answer_batch(
    kb: KnowledgeBase, cases: list[Any], acceptors: Acceptors
) -> tuple[dict[str, Any], list[tuple[dict, dict]]]:
    """The batch response body, and the (request, answer) pairs of the answered cases to audit.

    Each case is loaded and evaluated exactly as POST /v1/triage would; a rejected case gets the
    problem that call would answer, without request_id (the batch's is in the X-Request-ID header).
    """
    schema = TRIAGE_REQUEST_SCHEMA
    results: list[dict[str, Any]] = []
    decided: list[tuple[dict, dict]] = []
    for index, case in enumerate(cases):
        try:
            data = load(schema, case, acceptors)
        except ValidationError as exc:
            results.append({"index": index, "status": 422, "problem": validation_problem(exc.messages)})
            continue
        answer = evaluate(kb, data)
        decided.append((data, answer))
        results.append({"index": index, "status": 200, "answer": answer})
    body = {
        "results": results,
        "answered": len(decided),
        "rejected": len(results) - len(decided),
        "knowledge": {"version": kb.version, "sha256": kb.sha256},
    }
    return body, decided


@blp.route("/triage/batch", methods=["POST"])
# The batch route's own body limit, BATCH_MAX_CONTENT_LENGTH; MAX_CONTENT_LENGTH stays 64 KiB elsewhere.
@blp.arguments(BATCH_REQUEST_SCHEMA, example=BATCH_REQUEST, max_content_length="BATCH_MAX_CONTENT_LENGTH")
@blp.response(
    200,
    answers(BatchResponse, BatchResponseCompact),
    example=example(answer_batch(load_knowledge(), BATCH_REQUEST["cases"], {})[0]),
    headers=PREFERENCE_APPLIED,
    returns_response=True,
)
@blp.alt_response(400, response="BAD_REQUEST", description="Malformed JSON body.")
@blp.alt_response(413, response="REQUEST_ENTITY_TOO_LARGE", description=BATCH_TOO_LARGE)
@blp.alt_response(415, response="UNSUPPORTED_MEDIA_TYPE", description="Body not sent as application/json.")
@blp.doc(operationId="triageBatch", parameters=[PREFER_HEADER])
def triage_batch(body: dict[str, Any]) -> flask.Response:
    """Triage many patients in one call

    Each case is a POST /v1/triage body, validated and answered on its own: its result holds
    either the answer that call would give (status 200) or the 422 problem it would give (status
    422), in request order. The response is 200 whenever the request itself is well-formed, even
    if every case is rejected; errors of the request itself (malformed JSON, too large, `cases`
    missing, empty or longer than TRIAGE_BATCH_MAX_CASES) are problem+json as for the single call.
    With `Prefer: citations=compact` the answers list citation ids and one top-level `citations`
    object holds every citation any of them names, once (BatchResponseCompact).
    """
    config = flask.current_app.config
    limit = config["BATCH_MAX_CASES"]
    if len(body["cases"]) > limit:
        abort(422, messages={"json": {"cases": [f"Too many cases: at most {limit} per request."]}})
    acceptors = flask.current_app.extensions[ACCEPTORS]
    response_body, decided = answer_batch(knowledge_base(), body["cases"], acceptors)
    for data, answer in decided:  # one audit event (and decision metric) per answered case
        audit_decision("batch", data, answer, config["AUDIT_HASH_KEY"])
    if compact_wanted():
        return json_response(compact_batch(response_body), compact=True)
    return json_response(response_body)  # answers are already in TriageResponse's shape: no dump
