"""The engine as first written (commit 0465a71): one pass over every rule with the Kleene tree check.

Kept as the oracle for tests/test_engine_equivalence.py: the indexed engine in service/engine must give
exactly the answers this simple version gives. Not used by the service.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from service.engine.facts import build_facts
from service.engine.logic import Facts, Outcome, PartialSet
from service.engine.model import Citation, KnowledgeBase, Rule

DISCLAIMER = (
    "Decision support for clinicians. It does not diagnose; the treating clinician decides. "
    "Fitness sources are marked by their authority and never raise the level on their own."
)


@dataclass(frozen=True, slots=True)
class _Result:
    rule: Rule
    outcome: Outcome


def evaluate(kb: KnowledgeBase, request: dict[str, Any]) -> dict[str, Any]:
    """Evaluate validated request data; returns the response body as plain data."""
    facts = build_facts(request, kb.findings)
    results = [_Result(rule, rule.when.check(facts)) for rule in kb.rules]
    fired = [r for r in results if r.outcome.truth]
    rank = min(kb.levels[r.rule.level].rank for r in fired if r.rule.level)
    level = kb.level_by_rank(rank)
    setters = [r.rule for r in fired if r.rule.level == level.id]
    missing = _missing(kb, results, rank)
    return {
        "triage": {
            "level": level.id,
            "label": level.label,
            "action": level.action,
            "provisional": bool(missing),
            "rules": [r.id for r in setters],
            "citations": _citations(c for r in setters for c in r.citations),
        },
        "causes": _causes(kb, fired),
        "referrals": _referrals(kb, level.id, setters, fired),
        "advice": _advice(kb, rank, fired),
        "missing": missing,
        "trace": [_trace(r, facts) for r in fired],
        "knowledge": {"version": kb.version, "sha256": kb.sha256},
        "disclaimer": DISCLAIMER,
    }


def _citations(citations: Iterable[Citation]) -> list[dict[str, Any]]:
    unique = dict.fromkeys(citations)
    return [c.locator() for c in unique]


def _causes(kb: KnowledgeBase, fired: list[_Result]) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for res in fired:
        for cause_id, weight in res.rule.causes:
            entry = found.setdefault(cause_id, {"score": 0, "for": [], "against": [], "rules": [], "suggested": False})
            entry["score"] += weight
            entry["suggested"] |= weight > 0
            entry["for" if weight > 0 else "against"] += res.outcome.matched
            entry["rules"].append(res.rule)
    order = list(kb.causes)
    # Only causes some finding speaks for are listed; evidence against lowers their rank.
    ranked = sorted(
        (cid for cid, e in found.items() if e["suggested"]), key=lambda cid: (-found[cid]["score"], order.index(cid))
    )
    out = []
    for cid in ranked:
        entry, cause = found[cid], kb.causes[cid]
        out.append(
            {
                "id": cid,
                "name": cause.name,
                "about": cause.about,
                "strength": _strength(entry["score"]),
                "score": entry["score"],
                "supporting": list(dict.fromkeys(entry["for"])),
                "conflicting": list(dict.fromkeys(entry["against"])),
                "rules": [r.id for r in entry["rules"]],
                "citations": _citations([*cause.citations, *(c for r in entry["rules"] for c in r.citations)]),
            }
        )
    return out


def _strength(score: int) -> str:
    if score >= 4:
        return "strong"
    return "moderate" if score >= 2 else "weak"


def _referrals(kb: KnowledgeBase, level: str, setters: list[Rule], fired: list[_Result]) -> list[dict[str, Any]]:
    wanted: list[tuple[str, str, tuple[str, ...], Rule]] = [
        (kb.levels[level].referral, level, (), rule) for rule in setters
    ]
    wanted += [(ref.to, ref.urgency, ref.tests, res.rule) for res in fired for ref in res.rule.referrals]
    merged: dict[str, dict[str, Any]] = {}
    for to, urgency, tests, rule in wanted:
        entry = merged.setdefault(to, {"to": to, "urgency": urgency, "tests": [], "rules": [], "cites": []})
        if kb.urgencies.index(urgency) < kb.urgencies.index(entry["urgency"]):
            entry["urgency"] = urgency
        entry["tests"] += tests
        entry["rules"].append(rule.id)
        entry["cites"] += rule.citations
    out = []
    for entry in sorted(
        merged.values(), key=lambda e: (kb.urgencies.index(e["urgency"]), kb.referral_targets.index(e["to"]))
    ):
        out.append(
            {
                "to": entry["to"],
                "urgency": entry["urgency"],
                "tests": [t for t in kb.tests if t in entry["tests"]],
                "rules": list(dict.fromkeys(entry["rules"])),
                "citations": _citations(entry["cites"]),
            }
        )
    return out


def _advice(kb: KnowledgeBase, rank: int, fired: list[_Result]) -> list[dict[str, Any]]:
    by_advice: dict[str, list[str]] = {}
    for res in fired:
        for aid in res.rule.advice:
            by_advice.setdefault(aid, []).append(res.rule.id)
    out = []
    for aid, item in kb.advice.items():
        # Self-management advice is withheld when the patient must be seen more urgently.
        if aid in by_advice and rank >= kb.levels[item.up_to].rank:
            out.append({"id": aid, "text": item.text, "rules": by_advice[aid], "citations": _citations(item.citations)})
    return out


def _missing(kb: KnowledgeBase, results: list[_Result], rank: int) -> list[dict[str, Any]]:
    raises: dict[str, tuple[int, list[str]]] = {}
    for res in results:
        rule = res.rule
        if res.outcome.truth is not None or not rule.level or kb.levels[rule.level].rank >= rank:
            continue
        rule_rank = kb.levels[rule.level].rank
        for path in res.outcome.open:
            best, rules = raises.get(path, (rule_rank, []))
            raises[path] = (min(best, rule_rank), [*rules, rule.id])
    order = list(kb.findings)
    out = []
    for path in sorted(raises, key=lambda p: (raises[p][0], order.index(p))):
        best, rules = raises[path]
        out.append(
            {
                "field": path,
                "question": kb.findings[path].question,
                "could_raise_to": kb.level_by_rank(best).id,
                "rules": rules,
            }
        )
    return out


def _trace(res: _Result, facts: Facts) -> dict[str, Any]:
    return {
        "rule": res.rule.id,
        "statement": res.rule.statement,
        "matched": [{"field": path, "value": _plain(facts[path])} for path in res.outcome.matched],
    }


def _plain(value: Any) -> Any:
    if isinstance(value, PartialSet):
        return sorted(value.present)  # a matched partial set matched on what is known present
    return sorted(value) if isinstance(value, frozenset) else value
