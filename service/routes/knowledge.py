"""GET /v1/knowledge and /v1/rules/{rule_id}: the rules, causes and advice with their citations."""

from typing import Any

from flask_smorest import abort

from schemas.knowledge import Knowledge, RuleDoc
from service.engine.model import Rule
from service.routes import knowledge_base
from service.smorest import Blueprint

INTENDED_USE = "docs/clinical-safety/intended-use.md"  # in the repository, beside the policy (source SP)
blp = Blueprint("knowledge", __name__, url_prefix="/v1", description="The knowledge base behind every decision.")


@blp.route("/knowledge", methods=["GET"])
@blp.response(200, Knowledge)
@blp.doc(operationId="getKnowledge")
def knowledge() -> dict[str, Any]:
    """The knowledge base: version, hash, scope, authorities, levels, findings, rules, causes, advice, conflicts"""
    kb = knowledge_base()
    return {
        "version": kb.version,
        "sha256": kb.sha256,
        "intended_use": {
            "population": f"adults aged {kb.scope.min_age} and over with back, hip or leg symptoms",
            "min_age": kb.scope.min_age,
            "notes": kb.scope.notes,
            "citations": _locators(kb.scope.citations),
            "document": INTENDED_USE,
        },
        "authorities": [{"id": aid, "meaning": meaning} for aid, meaning in kb.authorities.items()],
        "levels": [vars(level) for level in kb.levels.values()],
        "findings": [
            {"field": f.path, "kind": f.kind, "values": list(f.values), "question": f.question}
            for f in kb.findings.values()
        ],
        "rules": [rule_doc(r) for r in kb.rules],
        "causes": [
            {"id": c.id, "name": c.name, "about": c.about, "citations": _locators(c.citations)}
            for c in kb.causes.values()
        ],
        "advice": [
            {"id": a.id, "text": a.text, "up_to": a.up_to, "citations": _locators(a.citations)}
            for a in kb.advice.values()
        ],
        "conflicts": [
            {
                "id": c.id,
                "statement": c.statement,
                "read_as_unknown": list(c.unknown),
                "citations": _locators(c.citations),
            }
            for c in kb.conflicts
        ],
    }


@blp.route("/rules/<string(maxlength=64):rule_id>", methods=["GET"])
@blp.response(200, RuleDoc)
@blp.alt_response(404, response="NOT_FOUND")
@blp.doc(operationId="getRule")
def rule(rule_id: str) -> dict[str, Any]:
    """One rule with its condition, effects and citations"""
    found = knowledge_base().rules_by_id.get(rule_id)
    if found is None:
        abort(404, message="No rule with that id; GET /v1/knowledge lists them.")
    return rule_doc(found)


def rule_doc(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "statement": rule.statement,
        "when": rule.when_source,
        "level": rule.level,
        "causes": [{"id": cid, "weight": w} for cid, w in rule.causes],
        "referrals": [{"to": r.to, "urgency": r.urgency, "tests": list(r.tests)} for r in rule.referrals],
        "advice": list(rule.advice),
        "citations": _locators(rule.citations),
    }


def _locators(citations: tuple) -> list[dict[str, Any]]:
    return [c.locator() for c in citations]
