"""flask-smorest, adapted once: problem+json errors, cross-field rules in the spec, and blueprints
whose documentation-only decorators add no call layer to a request."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flask
import flask_smorest
import marshmallow
from apispec import BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from werkzeug.exceptions import HTTPException

from schemas.cds import OperationOutcome
from schemas.problem import Problem
from service.errors import FHIR_ERROR_PREFIXES, PROBLEM_JSON, outcome_body, problem_body
from service.logs.requests import REQUEST_ID_KEY
from service.parsing import StrictJSONParser


class ProblemApi(flask_smorest.Api):
    """flask-smorest's Api with problem+json errors that keep protocol headers such as Allow, and no
    pagination components (no route pages)."""

    ERROR_SCHEMA = Problem

    def _init_spec(self, *, extra_plugins: Any = None, **kwargs: Any) -> None:
        super()._init_spec(extra_plugins=[*(extra_plugins or ()), CrossFieldRules()], **kwargs)

    def _register_pagination_header(self) -> None:
        # flask-smorest registers its X-Pagination header for paginated routes, and with it a PaginationMetadata
        # schema that reaches the document (and every generated SDK) even when, as here, no route pages.
        pass

    def handle_http_exception(self, error: HTTPException) -> flask.Response:
        data = getattr(error, "data", None) or {}
        if flask.request.path.startswith(FHIR_ERROR_PREFIXES):
            response = flask.jsonify(outcome_body(error, data))
        else:
            body = problem_body(error, data)
            request_id = flask.request.environ.get(REQUEST_ID_KEY)
            if request_id:
                body["request_id"] = request_id
            response = flask.jsonify(body)
            response.mimetype = PROBLEM_JSON
        response.status_code = error.code or 500
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        response.headers.update(data.get("headers") or {})
        return response

    def _register_responses(self) -> None:
        # flask-smorest's, with the error responses it registers documented as application/problem+json.
        self.DEFAULT_RESPONSE_CONTENT_TYPE = PROBLEM_JSON
        super()._register_responses()
        del self.DEFAULT_RESPONSE_CONTENT_TYPE  # back to the class's application/json for everything else


class CrossFieldRules(BasePlugin):
    """Adds a marshmallow schema's `Meta.openapi_rules` (JSON Schema keywords) to its OpenAPI component.

    For the rules a @validates_schema enforces across fields: documented, a request valid by openapi.yaml
    is one the service accepts. Schema classes inside the keywords become $refs (registered as needed).
    """

    def init_spec(self, spec: Any) -> None:
        super().init_spec(spec)
        self._converter = next(p.converter for p in spec.plugins if isinstance(p, MarshmallowPlugin))

    def schema_helper(self, name: str, definition: dict, schema: Any = None, **kwargs: Any) -> dict | None:
        rules = getattr(resolve_schema_cls(schema).Meta, "openapi_rules", None) if schema is not None else None
        return self._with_refs(rules) if rules else None

    def _with_refs(self, node: Any) -> Any:
        if isinstance(node, type) and issubclass(node, marshmallow.Schema):
            return self._converter.resolve_nested_schema(node)
        if isinstance(node, dict):
            return {key: self._with_refs(value) for key, value in node.items()}
        if isinstance(node, list):
            return [self._with_refs(value) for value in node]
        return node


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


# What StrictJSONParser answers for a body before any view runs; CDS_MAX_CONTENT_LENGTH sets the 413 limit.
FHIR_BODY_ERRORS = {
    400: "Malformed JSON body.",
    413: "Body larger than CDS_MAX_CONTENT_LENGTH (2 MiB by default).",
    415: "Body not sent as application/json.",
}


class FhirErrorBlueprint(Blueprint):
    """Documents its own OperationOutcome errors instead of the API-wide problem+json default."""

    @staticmethod
    def _prepare_response_doc(doc: dict, doc_info: dict, **kwargs: Any) -> dict:
        if "arguments" in doc_info:  # a request body, parsed by StrictJSONParser
            responses = doc_info.setdefault("response", {}).setdefault("responses", {})
            for status, description in FHIR_BODY_ERRORS.items():
                outcome = {"schema": OperationOutcome, "description": description, "content_type": "application/json"}
                responses.setdefault(status, [outcome])
        doc = Blueprint._prepare_response_doc(doc, doc_info, **kwargs)
        del doc["responses"]["default"]  # the API-wide problem+json default error
        return doc
