"""One blueprint per resource."""

import flask

from service.engine.model import KnowledgeBase


def knowledge_base() -> KnowledgeBase:
    return flask.current_app.extensions["triage_knowledge"]
