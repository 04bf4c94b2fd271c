"""Application factory."""

from __future__ import annotations

from typing import Any

import flask
import yaml

from service.config import DefaultConfig
from service.knowledge import load_knowledge
from service.knowledge.texts import verify_texts
from service.logs import configure_logging, init_request_logging, log
from service.problem import ProblemApi


def create_app(config: dict[str, Any] | None = None) -> flask.Flask:
    app = flask.Flask(__name__)
    app.json.sort_keys = False  # keep the answer's order: triage level first
    app.config.from_object(DefaultConfig)
    app.config.from_prefixed_env("TRIAGE")
    if config:
        app.config.update(config)
    configure_logging(app.config["LOG_LEVEL"])

    kb = load_knowledge(app.config["KNOWLEDGE_DIR"] or None)
    texts_dir = app.config["SOURCE_TEXTS_DIR"]
    if texts_dir:
        verify_texts(kb, texts_dir)  # raises with every mismatch listed
    app.extensions["triage_knowledge"] = kb
    log.info(
        "knowledge_loaded", version=kb.version, sha256=kb.sha256, rules=len(kb.rules), texts_verified=bool(texts_dir)
    )

    init_request_logging(app)
    api = ProblemApi(app)
    from service.routes import health, knowledge, sources, triage

    for module in (triage, knowledge, sources, health):
        api.register_blueprint(module.blp)

    @app.get("/openapi.yaml")
    def openapi_yaml() -> flask.Response:
        return flask.Response(spec_yaml(api), mimetype="application/yaml")

    app.extensions["triage_api"] = api
    return app


def spec_yaml(api: ProblemApi) -> str:
    """The OpenAPI document as committed in openapi.yaml."""
    return yaml.safe_dump(api.spec.to_dict(), sort_keys=False, allow_unicode=True, width=100)
