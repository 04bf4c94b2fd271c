"""One blueprint per resource."""

import flask

from service.engine.model import KnowledgeBase

KNOWLEDGE = "triage_knowledge"  # the app's knowledge base, in app.extensions


def knowledge_base() -> KnowledgeBase:
    return flask.current_app.extensions[KNOWLEDGE]
