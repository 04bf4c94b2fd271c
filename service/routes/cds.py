"""CDS Hooks 2.0.1: discovery, the triage service and its feedback endpoint.

Every call, discovery included, carries a client JWT that is verified before anything else; a
failure is a bare 401. Errors are OperationOutcome bodies (as CDS Hooks 3.0 recommends), not
problem+json, because EHRs read those.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import flask

from schemas.cds import CdsRequest, CdsResponse, Discovery, FeedbackRequest, OperationOutcome
from service.audit import audit_decision
from service.auth.replay import ReplayStoreUnavailable
from service.auth.tokens import TokenRejected
from service.cds.cards import OFFERED_REASONS
from service.cds.extract import WrongPatient
from service.cds.prefetch import DataUnavailable
from service.cds.services import SERVICE_ID, answer_hook, discovery
from service.cds.setup import CdsState
from service.errors import issue, operation_outcome
from service.logs.setup import log
from service.routes import knowledge_base
from service.smorest import FhirErrorBlueprint

blp = FhirErrorBlueprint("cds", __name__, description="CDS Hooks 2.0 service for EHRs.")
JSON = "application/json"


UNAVAILABLE = "The replay store cannot be asked, so no client JWT is accepted (fail closed); see Retry-After."


def _outcome_doc(description: str) -> dict[str, Any]:
    return {"schema": OperationOutcome, "content_type": JSON, "description": description}


def cds_state() -> CdsState:
    return flask.current_app.extensions["triage_cds"]


def base_url() -> tuple[str, bool]:
    """The URL clients call this service at, and whether it is the configured public one."""
    configured = flask.current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return (configured, True) if configured else (flask.request.host_url.rstrip("/"), False)


@blp.before_request
def _verify_client() -> flask.Response | None:
    if flask.request.method == "OPTIONS":
        return None  # CORS preflight carries no credentials
    flask.request.max_content_length = flask.current_app.config["CDS_MAX_CONTENT_LENGTH"]
    verifier = cds_state().verifier
    if verifier is None:
        return None  # CDS_AUTH_DISABLED: local development only, announced at start-up
    try:
        verifier.verify(flask.request.headers.get("Authorization"), base_url()[0] + flask.request.path)
    except TokenRejected as exc:
        log.warning("cds_auth_rejected", reason=exc.reason)
        return _reply(operation_outcome(issue("login")), 401, {"WWW-Authenticate": "Bearer"})
    except ReplayStoreUnavailable as exc:
        # Fail closed, but say whose fault it is: the token may be good, so a 401 would send the EHR's
        # team rotating keys. 503 + Retry-After is a transient server fault an EHR retries or shows as such.
        log.error("cds_auth_unavailable", reason="replay_store_unavailable", error=str(exc))
        why = "The service cannot check client tokens for replay at the moment; retry shortly."
        return _reply(operation_outcome(issue("transient", why, ["Authorization"])), 503, {"Retry-After": "5"})
    return None


def _reply(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> flask.Response:
    response = flask.jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _logged_reason(reason: dict[str, Any] | None) -> str | None:
    # A code the card offered is one of a known few; anything else an EHR sends may be free text, so
    # it is logged as "other", never verbatim.
    if not reason:
        return None
    return reason["code"] if (reason.get("system"), reason.get("code")) in OFFERED_REASONS else "other"


def _known(service_id: str) -> None:
    if service_id != SERVICE_ID:
        flask.abort(404, description="No CDS service with that id here; see /cds-services.")  # never echoed


@blp.route("/cds-services", methods=["GET"])
@blp.response(200, Discovery)
@blp.alt_response(401, **_outcome_doc("Missing or untrusted client JWT."))
@blp.alt_response(503, **_outcome_doc(UNAVAILABLE))
@blp.doc(operationId="cdsDiscovery", security=[{"cdsClientJwt": []}])
def cds_discovery() -> flask.Response:
    """CDS Hooks discovery

    The services offered, the hooks they answer and their prefetch templates.
    """
    return _reply(discovery(cds_state().mapping))


@blp.route("/cds-services/<service_id>", methods=["POST"])
@blp.arguments(CdsRequest)
@blp.response(200, CdsResponse)
@blp.alt_response(401, **_outcome_doc("Missing or untrusted client JWT."))
@blp.alt_response(503, **_outcome_doc(UNAVAILABLE))
@blp.alt_response(404, **_outcome_doc("No such service."))
@blp.alt_response(412, **_outcome_doc("Prefetch missing and the FHIR server could not be read."))
@blp.alt_response(422, **_outcome_doc("The call does not match CDS Hooks 2.0 or the service's hooks."))
@blp.doc(operationId="cdsTriage", security=[{"cdsClientJwt": []}])
def cds_call(call: dict[str, Any], service_id: str) -> flask.Response:
    """Triage on a CDS hook

    Reads the exam findings from prefetch (or the EHR's FHIR server), evaluates them with the same
    engine as POST /v1/triage and answers with one card, or none when the record holds nothing the
    service reads.
    """
    _known(service_id)
    state = cds_state()
    try:
        answer = answer_hook(knowledge_base(), state, call, *base_url(), datetime.now(UTC))
    except DataUnavailable as exc:
        log.info("cds_data_unavailable", key=exc.key, reason=exc.reason)
        diagnostics = f"Prefetch {exc.key!r} was not sent and could not be read from fhirServer ({exc.reason})."
        return _reply(operation_outcome(issue("processing", diagnostics, [f"prefetch.{exc.key}"])), 412)
    except WrongPatient as exc:
        message = "Prefetched or fetched data names another patient than context.patientId; nothing was evaluated."
        return _reply(operation_outcome(issue("invalid", message, [exc.expression])), 422)
    log.info("cds_decision", hook=call["hook"], cards=len(answer.body["cards"]), mapping_sha256=state.mapping.sha256)
    if answer.result is not None and answer.request is not None:
        audit_decision("cds", answer.request, answer.result, flask.current_app.config["AUDIT_HASH_KEY"])
    return _reply(answer.body)


@blp.route("/cds-services/<service_id>/feedback", methods=["POST"])
@blp.arguments(FeedbackRequest)
@blp.response(200, description="Feedback recorded (empty body).")
@blp.alt_response(401, **_outcome_doc("Missing or untrusted client JWT."))
@blp.alt_response(503, **_outcome_doc(UNAVAILABLE))
@blp.alt_response(404, **_outcome_doc("No such service."))
@blp.alt_response(422, **_outcome_doc("The feedback does not match CDS Hooks 2.0."))
@blp.doc(operationId="cdsFeedback", security=[{"cdsClientJwt": []}])
def cds_feedback(body: dict[str, Any], service_id: str) -> flask.Response:
    """Feedback on a card

    One audit event per item: card uuid, outcome, override reason (one of the codes the card
    offered, else "other") and the number of accepted suggestions. Comments and anything else about
    the patient are never logged.
    """
    _known(service_id)
    for item in body["feedback"]:
        reason = (item.get("overrideReason") or {}).get("reason")
        log.info(
            "cds_feedback",
            card=item["card"],
            outcome=item["outcome"],
            override_reason=_logged_reason(reason),
            accepted_suggestions=len(item.get("acceptedSuggestions", [])),
        )
    return flask.Response(status=200, mimetype="text/plain")
