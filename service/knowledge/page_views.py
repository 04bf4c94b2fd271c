"""What the clinician pages show, as plain data for their templates: a rule and the knowledge base index.

A rule page shows the rule's statement, its condition in plain words, its effects, and each cited
passage marked inside its whole section, with the authority of its source. The words of a passage come
from the verified texts at run time (passages.passage_view), never from the project; without them the
page shows the locator and says the text is not available. No patient data: nothing here reads a request.
"""

from __future__ import annotations

from typing import Any

from service.engine.model import Citation, KnowledgeBase, Rule
from service.knowledge.passages import passage_view
from service.knowledge.plain_words import condition_words

NO_HEADING = "Introduction"  # a section before the first heading (sources.yaml heading: null)


def rule_view(kb: KnowledgeBase, texts: dict[str, str], rule: Rule) -> dict[str, Any]:
    level = kb.levels[rule.level] if rule.level else None
    return {
        "id": rule.id,
        "statement": rule.statement,
        "condition": condition_words(rule.when_source, kb.derived),
        "level": {"label": level.label, "action": level.action} if level else None,
        "causes": [{"name": kb.causes[cid].name, "weight": weight} for cid, weight in rule.causes],
        "referrals": [
            {
                "to": kb.referral_targets[r.to],
                "urgency": kb.urgencies[r.urgency].word,
                "tests": [kb.tests[t] for t in r.tests],
            }
            for r in rule.referrals
        ],
        "advice": [kb.advice[aid].text for aid in rule.advice],
        "citations": [citation_view(kb, texts, cit) for cit in rule.citations],
    }


def citation_view(kb: KnowledgeBase, texts: dict[str, str], cit: Citation) -> dict[str, Any]:
    """The citation's source, authority and locator, and its section paragraph by paragraph, the cited
    paragraph split around the passage (`before`, `passage`, `after`) so the page can mark it."""
    shown = passage_view(kb, texts, cit.id)
    if shown is None:  # a rule cites only ids the loader found in citations.yaml
        raise KeyError(cit.id)
    source = _source(kb, cit.source)
    section = next(s for s in source["sections"] if s["id"] == cit.section)
    view = {
        "id": cit.id,
        "source": cit.source,
        "title": source["title"],
        "authority": source["authority"],
        "authority_meaning": kb.authorities[source["authority"]],
        "heading": section["heading"] or NO_HEADING,
        "paragraph": cit.paragraph,
        "locator": f"{source['file']}, characters {cit.start} to {cit.end}",
        "sha256": cit.sha256,
        "text_available": shown["text_available"],
        "message": shown["message"],
        "paragraphs": [],
    }
    if not shown["text_available"]:
        return view
    text = texts[cit.source]
    for number, (first, last) in enumerate(section["paragraphs"], 1):
        if number == cit.paragraph:
            view["paragraphs"].append(
                {"before": text[first : cit.start], "passage": shown["passage"], "after": text[cit.end : last]}
            )
        else:
            view["paragraphs"].append({"text": text[first:last]})
    return view


def index_view(kb: KnowledgeBase) -> dict[str, Any]:
    """The knowledge base at a glance: version, intended use, sources with their authority, and every rule."""
    return {
        "version": kb.version,
        "sha256": kb.sha256,
        "population": kb.scope.notes["in"] if kb.scope else "",
        "authorities": kb.authorities,
        "sources": [
            {"id": s["id"], "title": s["title"], "authority": s["authority"], "held": s.get("held")} for s in kb.sources
        ],
        "levels": [{"label": level.label, "action": level.action} for level in kb.levels.values()],
        "rules": [
            {"id": r.id, "statement": r.statement, "level": kb.levels[r.level].label if r.level else ""}
            for r in kb.rules
        ],
    }


def _source(kb: KnowledgeBase, source_id: str) -> dict[str, Any]:
    return next(s for s in kb.sources if s["id"] == source_id)
