"""One blueprint per resource."""

import flask

from service.engine.model import KnowledgeBase

KNOWLEDGE = "triage_knowledge"  # the app's knowledge base, in app.extensions
TEXTS = "triage_source_texts"  # the verified texts it may show (source id -> text), in app.extensions


def knowledge_base() -> KnowledgeBase:
    return flask.current_app.extensions[KNOWLEDGE]


def source_texts() -> dict[str, str]:
    return flask.current_app.extensions[TEXTS]
