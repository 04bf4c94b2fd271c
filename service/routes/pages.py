"""Pages for clinicians: the knowledge base index and one page per rule, as server-rendered HTML.

CDS cards link here, so a clinician can open a rule from the EHR and read each cited passage inside its
section. The pages hold no patient data, so PAGES_OPEN (on by default) serves them without a credential;
a site that wants them closed turns it off and they need the `knowledge` scope like /v1/knowledge.
Jinja (Flask's own) renders them; they load one stylesheet from this origin and nothing else: no script,
no outside asset, under a Content-Security-Policy that allows only that.
"""

from __future__ import annotations

from pathlib import Path

import flask

from service.knowledge.page_views import index_view, rule_view
from service.routes import knowledge_base, source_texts

blp = flask.Blueprint("pages", __name__)

STYLESHEET = (Path(__file__).resolve().parents[1] / "templates" / "pages.css").read_text(encoding="utf-8")
PAGES_POLICY = "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


@blp.after_request
def _with_policy(response: flask.Response) -> flask.Response:
    response.headers["Content-Security-Policy"] = PAGES_POLICY
    return response


def _page(html: str, status: int = 200) -> flask.Response:
    return flask.Response(html, status=status, mimetype="text/html")


@blp.get("/knowledge")
def knowledge_index() -> flask.Response:
    return _page(flask.render_template("knowledge.html", kb=index_view(knowledge_base())))


@blp.get("/knowledge/rules/<string(maxlength=64):rule_id>")
def rule_page(rule_id: str) -> flask.Response:
    kb = knowledge_base()
    rule = kb.rules_by_id.get(rule_id)
    if rule is None:
        return _page(flask.render_template("no_rule.html", version=kb.version), status=404)
    return _page(flask.render_template("rule.html", rule=rule_view(kb, source_texts(), rule), version=kb.version))


@blp.get("/knowledge/pages.css")
def stylesheet() -> flask.Response:
    return flask.Response(STYLESHEET, mimetype="text/css")
