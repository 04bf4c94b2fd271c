"""Error bodies: RFC 9457 problem+json for the API, FHIR OperationOutcome for CDS Hooks callers.

Plain data builders; ProblemApi (service/smorest.py) turns an HTTPException into a response with them.
"""

from __future__ import annotations

from typing import Any

from werkzeug.exceptions import HTTPException, UnprocessableEntity

PROBLEM_JSON = "application/problem+json"
UNKNOWN_FIELD = "Unknown field."  # marshmallow's message for a key the schema does not define


def problem_body(error: HTTPException, data: dict[str, Any]) -> dict[str, Any]:
    """The problem+json body for an error, before the request id is added.

    `data` is what flask-smorest's abort attaches: "message", or webargs' "messages" for a 422.
    """
    body: dict[str, Any] = {"type": "about:blank", "title": error.name, "status": error.code}
    detail = data.get("message") or _default_detail(error)
    if detail:
        body["detail"] = detail
    if "messages" in data:
        body["errors"] = _field_errors(data["messages"])
        body["detail"] = "The request does not match the schema; see errors."
    return body


def validation_problem(messages: dict[str, Any] | list[Any]) -> dict[str, Any]:
    """The 422 body POST /v1/triage answers for a body a schema's load refused with these messages
    (a marshmallow ValidationError's), without request_id: for results inside a 200, such as a batch's."""
    return problem_body(UnprocessableEntity(), {"messages": {"json": messages}})


# Paths whose callers (EHRs) expect FHIR OperationOutcome error bodies instead of problem+json. By path,
# not blueprint: a 404 or 405 is raised by routing, before any blueprint is chosen.
FHIR_ERROR_PREFIXES = ("/cds-services",)
ISSUE_CODES = {
    400: "structure",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    412: "processing",
    413: "too-costly",
    415: "not-supported",
    422: "invalid",
    500: "exception",
}


def issue(code: str, diagnostics: str | None = None, expression: list[str] | None = None) -> dict[str, Any]:
    """One error issue of an OperationOutcome; FHIR forbids empty elements, so none are written."""
    out: dict[str, Any] = {"severity": "error", "code": code}
    if diagnostics:
        out["diagnostics"] = diagnostics
    if expression:
        out["expression"] = expression
    return out


def operation_outcome(*issues: dict[str, Any]) -> dict[str, Any]:
    """An OperationOutcome: the error body of every /cds-services answer."""
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


def outcome_body(error: HTTPException, data: dict[str, Any]) -> dict[str, Any]:
    """The OperationOutcome for an error, as problem_body is the problem+json one."""
    if "messages" in data:
        return operation_outcome(
            *(issue("invalid", e["detail"], [e["field"]]) for e in _field_errors(data["messages"]))
        )
    code = ISSUE_CODES.get(error.code or 500, "processing")
    return operation_outcome(issue(code, data.get("message") or _default_detail(error)))


def _default_detail(error: HTTPException) -> str | None:
    # Werkzeug's own descriptions never contain request data; a 500 says nothing of internals.
    if error.code == 500:
        return "The server could not complete the request. It has been logged with the request id."
    return error.description


def _field_error(path: list[str], message: str) -> dict[str, str]:
    pointer = "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)
    return {"field": ".".join(path) or "(body)", "pointer": "#" + pointer, "detail": message}


def _field_errors(messages: dict[str, Any]) -> list[dict[str, str]]:
    """Flatten webargs/marshmallow messages {"json": {"a": {"b": ["msg"]}}} into one entry per message."""
    out: list[dict[str, str]] = []

    def walk(node: Any, path: list[str]) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                # marshmallow files errors about a whole object under "_schema"; a client key of that
                # name is an unknown field and keeps its own path.
                whole_object = key == "_schema" and child != [UNKNOWN_FIELD]
                walk(child, path if whole_object else [*path, str(key)])
        elif isinstance(node, list) and all(isinstance(m, str) for m in node):
            out.extend(_field_error(path, message) for message in node)
        else:
            out.append(_field_error(path, str(node)))

    for location, node in messages.items():
        walk(node, [] if location == "json" else [location])
    return out
