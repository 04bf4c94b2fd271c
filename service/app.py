"""Application factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask
import yaml

from service.auth.guard import SECURITY_HEADERS, SECURITY_SCHEMES, AccessDocs, init_access
from service.cds.setup import as_list, build_cds
from service.config import DefaultConfig
from service.cycle import RequestCycle
from service.engine.model import KnowledgeBase
from service.knowledge import load_knowledge
from service.knowledge.texts import shown_texts
from service.logs.requests import init_request_logging
from service.logs.setup import configure_logging, log
from service.metrics import init_metrics
from service.routes import KNOWLEDGE, TEXTS
from service.settings import from_environment
from service.smorest import ProblemApi
from service.validation import ACCEPTORS, build_acceptors

KNOWLEDGE_VERSION_HEADER = "X-Knowledge-Version"  # on every response (versioning policy: CHANGELOG.md)
CDS_CLIENT_JWT = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "CDS Hooks client JWT (ES384/RS384).",
}


class ServiceFlask(flask.Flask):
    """Flask, asking once per function whether it is a coroutine function.

    Flask asks on every request, for the view and every before, after and teardown function; inspect's
    check costs about a microsecond each, more than most of those functions (bench/profile_notes.md).
    The functions are the app's own fixed set, so the table stays small.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._synced: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        synced = self._synced.get(func)
        if synced is None:
            synced = self._synced[func] = super().ensure_sync(func)
        return synced


def create_app(config: dict[str, Any] | None = None) -> flask.Flask:
    app = ServiceFlask(__name__)
    app.json.sort_keys = False  # keep the answer's order: triage level first
    app.config.from_object(DefaultConfig)
    app.config.update(from_environment())  # every TRIAGE_<NAME> typed and checked (service/settings.py)
    if config:
        app.config.update(config)
    configure_logging(app.config["LOG_LEVEL"])

    kb = load_knowledge(app.config["KNOWLEDGE_DIR"] or None)
    texts_dir = app.config["SOURCE_TEXTS_DIR"]
    # With texts_dir, every text is verified (a mismatch raises, every one listed) and kept for the
    # passage view (GET /v1/citations/{id}); without it, only the service's own policy can be shown.
    app.extensions[TEXTS] = shown_texts(kb, texts_dir)
    app.extensions[KNOWLEDGE] = kb
    log.info(
        "knowledge_loaded", version=kb.version, sha256=kb.sha256, rules=len(kb.rules), texts_verified=bool(texts_dir)
    )

    init_request_logging(app)

    @app.before_request
    def _no_query() -> None:
        # No route reads a query string: one is input the service would ignore, so it is refused like an
        # unknown body field (nginx refuses it too, before its error log could quote it).
        if flask.request.environ.get("QUERY_STRING"):
            flask.abort(400, description="This API takes no query parameters; send findings in the JSON body.")

    # Every response, errors included, says which knowledge base answered (a client can tell a changed
    # answer from a changed knowledge base without reading the body) and carries the security headers.
    app.wsgi_app = RequestCycle(app.wsgi_app, {KNOWLEDGE_VERSION_HEADER: kb.version, **SECURITY_HEADERS})  # type: ignore[method-assign]
    init_access(app)
    init_metrics(app)
    _init_cds(app, kb)
    api = ProblemApi(app)
    for name, scheme in {**SECURITY_SCHEMES, "cdsClientJwt": CDS_CLIENT_JWT}.items():
        api.spec.components.security_scheme(name, scheme)
    api.spec.plugins.append(AccessDocs())  # before the blueprints: it documents each path as it is added
    from service.routes import cds, citations, docs, health, knowledge, pages, sources, triage

    for module in (triage, knowledge, citations, sources, health, cds):
        api.register_blueprint(module.blp)
    app.register_blueprint(docs.blp)  # a plain blueprint: the docs are not in their own OpenAPI document
    app.register_blueprint(pages.blp)  # HTML for people, not part of the API's contract either

    @app.get("/openapi.yaml")
    def openapi_yaml() -> flask.Response:
        return flask.Response(spec_yaml(api), mimetype="application/yaml")

    app.extensions["triage_api"] = api
    app.extensions[ACCEPTORS] = build_acceptors(api.spec.to_dict())
    return app


def _init_cds(app: flask.Flask, kb: KnowledgeBase) -> None:
    state = build_cds(kb, app.config)
    app.extensions["triage_cds"] = state
    if state.verifier is None:
        # Loud on purpose: without verification anyone who can reach the port can call the service.
        log.warning(
            "cds_auth_disabled",
            message="CDS Hooks calls are NOT authenticated (TRIAGE_CDS_AUTH_DISABLED). Local development only.",
        )
    log.info(
        "cds_ready",
        mapping_version=state.mapping.version,
        trusted_issuers=state.issuers,
        fhir_hosts=len(as_list(app.config["CDS_FHIR_HOSTS"])),
    )


def spec_yaml(api: ProblemApi) -> str:
    """The OpenAPI document as committed in openapi.yaml."""
    return yaml.safe_dump(api.spec.to_dict(), sort_keys=False, allow_unicode=True, width=100)
