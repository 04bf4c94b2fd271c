"""RFC 9457 problem+json for every error, and strict JSON request parsing."""

from __future__ import annotations

import functools
import http
import json
from collections.abc import Callable
from typing import Any, NoReturn

import flask
import flask_smorest
import marshmallow
from apispec import BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from flask_smorest.utils import prepare_response
from gunicorn.http.errors import ParseException
from webargs.flaskparser import FlaskParser, abort, is_json_request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, UnprocessableEntity

from schemas.cds import OperationOutcome
from schemas.problem import Problem
from service.strict_json import InvalidJSON, parse_strict_json

PROBLEM_JSON = "application/problem+json"
UNKNOWN_FIELD = "Unknown field."  # marshmallow's message for a key the schema does not define


class ProblemApi(flask_smorest.Api):
    """flask-smorest's Api with problem+json errors that keep protocol headers such as Allow."""

    ERROR_SCHEMA = Problem

    def _init_spec(self, *, extra_plugins: Any = None, **kwargs: Any) -> None:
        super()._init_spec(extra_plugins=[*(extra_plugins or ()), CrossFieldRules()], **kwargs)

    def handle_http_exception(self, error: HTTPException) -> flask.Response:
        data = getattr(error, "data", None) or {}
        if flask.request.path.startswith(FHIR_ERROR_PREFIXES):
            return _operation_outcome_response(error, data)
        body = problem_body(error, data)
        request_id = flask.g.get("request_id")
        if request_id:
            body["request_id"] = request_id
        response = flask.jsonify(body)
        response.status_code = error.code
        response.mimetype = PROBLEM_JSON
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        for name, value in (data.get("headers") or {}).items():
            response.headers[name] = value
        return response

    def _register_responses(self) -> None:
        # Same as flask-smorest's, but documents errors as application/problem+json.
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, PROBLEM_JSON)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)


class CrossFieldRules(BasePlugin):
    """Adds a marshmallow schema's `Meta.openapi_rules` (JSON Schema keywords) to its OpenAPI component.

    For the rules a @validates_schema enforces across fields: documented, a request valid by openapi.yaml
    is one the service accepts. Schema classes inside the keywords become $refs (registered as needed).
    """

    def init_spec(self, spec: Any) -> None:
        super().init_spec(spec)
        self._converter = next(p.converter for p in spec.plugins if isinstance(p, MarshmallowPlugin))

    def schema_helper(self, name: str, definition: dict, **kwargs: Any) -> dict | None:
        schema = kwargs.get("schema")
        meta = getattr(resolve_schema_cls(schema), "Meta", None) if schema is not None else None
        rules = getattr(meta, "openapi_rules", None)
        return self._with_refs(rules) if rules else None

    def _with_refs(self, node: Any) -> Any:
        if isinstance(node, type) and issubclass(node, marshmallow.Schema):
            return self._converter.resolve_nested_schema(node)
        if isinstance(node, dict):
            return {key: self._with_refs(value) for key, value in node.items()}
        if isinstance(node, list):
            return [self._with_refs(value) for value in node]
        return node


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


def _operation_outcome_response(error: HTTPException, data: dict[str, Any]) -> flask.Response:
    code = ISSUE_CODES.get(error.code or 500, "processing")
    if "messages" in data:
        issues = [
            {"severity": "error", "code": "invalid", "diagnostics": e["detail"], "expression": [e["field"]]}
            for e in _field_errors(data["messages"])
        ]
    else:
        issues = [{"severity": "error", "code": code, "diagnostics": data.get("message") or _default_detail(error)}]
    response = flask.jsonify({"resourceType": "OperationOutcome", "issue": [_no_empty(i) for i in issues]})
    response.status_code = error.code or 500
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _no_empty(issue: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in issue.items() if v}


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
            for message in node:
                out.append(_field_error(path, message))
        else:
            out.append(_field_error(path, str(node)))

    for location, node in messages.items():
        walk(node, [] if location == "json" else [location])
    return out


def read_whole_body(req: flask.Request) -> bytes:
    """The body as sent, or an error: werkzeug under gunicorn (wsgi.input_terminated) returns a cut body silently."""
    try:
        raw = req.get_data(cache=True)
    except ParseException as exc:  # gunicorn reads a chunked body lazily: a bad chunk surfaces here
        raise InvalidJSON("malformed chunked encoding") from exc
    declared, limit = req.content_length, req.max_content_length
    if declared is None and limit is not None and len(raw) >= limit and req.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()  # chunked body over the limit: werkzeug stops reading at the limit
    if declared is not None and len(raw) < declared:
        raise InvalidJSON("body shorter than its Content-Length")  # the client stopped sending
    return raw


class StrictJSONParser(FlaskParser):
    """JSON bodies must say they are JSON (else 415) and be unambiguous (else 400)."""

    def _raw_load_json(self, req: flask.Request) -> Any:
        # The usual header checked as it is before werkzeug parses it (its options, case, +json).
        if req.environ.get("CONTENT_TYPE") != "application/json" and not is_json_request(req):
            abort(415, message="Send the body as application/json.")
        return parse_strict_json(read_whole_body(req))

    def parse_body(self, schema: marshmallow.Schema, req: flask.Request) -> Any:
        """What parse(schema, req, location="json") returns, without webargs' location machinery
        for a body that loads cleanly: for a JSON body, parse only adds hooks this parser leaves at
        their defaults. Anything else (a 415, bad JSON, a ValidationError) is parsed again by parse
        itself, so every error is webargs' own answer (the body is read once and cached)."""
        try:
            return schema.load(self._raw_load_json(req))
        except (json.JSONDecodeError, UnicodeDecodeError, marshmallow.ValidationError):
            return self.parse(schema, req, location="json")

    def _handle_invalid_json_error(self, error: Exception, req: flask.Request, *args: Any, **kwargs: Any) -> NoReturn:
        reason = getattr(error, "reason", "malformed JSON")
        abort(400, message=f"Invalid JSON body: {reason}.")


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = StrictJSONParser()

    # flask-smorest's alt_response and doc only add documentation, yet each wraps the view in one
    # more call layer (with Flask's coroutine check) that every request then pays. These keep the
    # documentation they record and hand back the view itself.
    def alt_response(self, *args: Any, **kwargs: Any) -> Callable[[Callable], Callable]:
        return _doc_only(super().alt_response(*args, **kwargs))

    def doc(self, **kwargs: Any) -> Callable[[Callable], Callable]:
        return _doc_only(super().doc(**kwargs))

    def response(self, *args: Any, returns_response: bool = False, **kwargs: Any) -> Callable[[Callable], Callable]:
        """flask-smorest's response; with returns_response=True, for a view that returns the finished
        flask.Response (its body already in the schema's shape), only the documentation: the wrapper
        would pass that response through unchanged, at a call layer and a coroutine check per request."""
        decorator = super().response(*args, **kwargs)
        return _doc_only(decorator) if returns_response else decorator

    def arguments(
        self, schema: Any, *, location: str = "json", max_content_length: str | None = None, **kwargs: Any
    ) -> Callable[[Callable], Callable]:
        """flask-smorest's arguments, documented the same; a JSON body given as a schema instance is
        parsed by one StrictJSONParser.parse_body call instead of through two wrapper layers (the
        same parse: the same 400, 415 and 422 answers).

        max_content_length names the config key of this route's own body limit, set before the body
        is read; MAX_CONTENT_LENGTH stays the limit everywhere else.
        """
        documented = super().arguments(schema, location=location, **kwargs)
        webargs_options = set(kwargs) - {"content_type", "required", "description", "example", "examples"}
        if location != "json" or not isinstance(schema, marshmallow.Schema) or webargs_options:
            if max_content_length:
                raise TypeError("max_content_length needs a JSON body given as a schema instance")
            return documented
        parse_body = self.ARGUMENTS_PARSER.parse_body

        def decorator(view: Callable) -> Callable:
            @functools.wraps(view)
            def parse_then_view(*args: Any, **view_args: Any) -> Any:
                request = flask.request
                if max_content_length:
                    request.max_content_length = flask.current_app.config[max_content_length]
                return view(*args, parse_body(schema, request), **view_args)

            parse_then_view._apidoc = documented(view)._apidoc  # type: ignore[attr-defined]
            return parse_then_view

        return decorator


def _doc_only(decorator: Callable[[Callable], Callable]) -> Callable[[Callable], Callable]:
    def apply(view: Callable) -> Callable:
        view._apidoc = decorator(view)._apidoc  # type: ignore[attr-defined]
        return view

    return apply


class _WithoutDefaultError:
    """The Api seen by one blueprint's doc builder, minus the default problem+json error response."""

    DEFAULT_ERROR_RESPONSE_NAME = None

    def __init__(self, api: flask_smorest.Api):
        self._api = api

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


# What StrictJSONParser answers for a body before any view runs; CDS_MAX_CONTENT_LENGTH sets the 413 limit.
FHIR_BODY_ERRORS = {
    400: "Malformed JSON body.",
    413: "Body larger than CDS_MAX_CONTENT_LENGTH (2 MiB by default).",
    415: "Body not sent as application/json.",
}


class FhirErrorBlueprint(Blueprint):
    """Documents its own OperationOutcome errors instead of the API-wide problem+json default."""

    @staticmethod
    def _prepare_response_doc(doc: dict, doc_info: dict, *, api: flask_smorest.Api, **kwargs: Any) -> dict:
        if "arguments" in doc_info:  # a request body, parsed by StrictJSONParser
            responses = doc_info.setdefault("response", {}).setdefault("responses", {})
            for status, description in FHIR_BODY_ERRORS.items():
                outcome = {"schema": OperationOutcome, "description": description, "content_type": "application/json"}
                responses.setdefault(status, [outcome])
        return Blueprint._prepare_response_doc(doc, doc_info, api=_WithoutDefaultError(api), **kwargs)
