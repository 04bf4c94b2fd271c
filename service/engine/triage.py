"""Evaluate a triage request against the knowledge base.

The level is the most urgent level that any fired rule sets (the baseline rule always fires).
A rule whose condition is unknown could still fire: if it would raise the level, its unknown
findings become the questions still to ask and the answer is provisional.

Which rules need judging comes from the compiled plan (service/engine/plan.py), and they are judged
on every call. What follows from their verdicts is worked out once per distinct set of verdicts
and shared read-only by every answer with those verdicts (service/engine/frozen.py).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from service.engine.answer import Answer, encode_after_trace, encode_before_trace
from service.engine.frozen import freeze
from service.engine.logic import Facts, PartialSet
from service.engine.model import KnowledgeBase
from service.engine.plan import Plan, RulePlan, Verdict, judge, locators, plan_for

DISCLAIMER = (
    "Decision support for clinicians. It does not diagnose; the treating clinician decides. "
    "Fitness sources are marked by their authority and never raise the level on their own."
)

Judged = list[tuple[RulePlan, Verdict]]


def evaluate(kb: KnowledgeBase, request: dict[str, Any]) -> dict[str, Any]:
    """Evaluate validated request data; returns the response body as read-only plain data (an Answer,
    which also carries its JSON: service/engine/answer.py)."""
    plan = plan_for(kb)
    seen = plan.read(request)
    decision = _decision(kb, plan, judge(plan, seen))
    trace, trace_json = _traces(decision, seen.facts)
    return Answer(
        {
            "triage": decision.triage,
            "causes": decision.causes,
            "referrals": decision.referrals,
            "advice": decision.advice,
            "missing": decision.missing,
            "trace": trace,
            "knowledge": plan.knowledge,
            "disclaimer": DISCLAIMER,
        },
        (decision.json_before_trace, trace_json, decision.json_after_trace),
        decision.rule_ids,
    )


class Decision(NamedTuple):
    """Everything an answer says that follows from the verdicts on the judged rules alone, whoever
    the patient: read-only, shared by every answer with the same verdicts."""

    triage: dict[str, Any]
    causes: list[dict[str, Any]]
    referrals: list[dict[str, Any]]
    advice: list[dict[str, Any]]
    missing: list[dict[str, Any]]
    fired: tuple[tuple[RulePlan, tuple[str, ...]], ...]  # each fired rule with the facts it matched
    matched: tuple[str, ...]  # those facts, rule after rule: their values key the traces
    rule_ids: list[str]  # the fired rules' ids, in trace order
    traces: dict[tuple, tuple[list[dict[str, Any]], bytes]]  # values of `matched` -> the trace, encoded
    json_before_trace: bytes  # the answer's JSON around its trace (answer.py)
    json_after_trace: bytes


# Bounds of the remembered tables, per knowledge base and process. A decision with its first trace
# takes about 21 KB (tracemalloc over the scenario mix), a further trace a few KB: at most about
# 512 x (21 + 7 x 3) KB, some 20 MB. The scenario mix needs 45 decisions and 50 traces.
DECISIONS_KEPT = 512
TRACES_KEPT = 8  # per decision


def _decision(kb: KnowledgeBase, plan: Plan, judged: list[tuple[int, Verdict]]) -> Decision:
    # The verdicts on the judged rules decide the level, causes, referrals, advice and questions, so
    # patients with the same verdicts share them; working them out is most of an evaluation. The
    # verdicts themselves are judged afresh on every call. The table is bounded and emptied when full.
    key = tuple(judged)
    found = plan.decisions.get(key)
    if found is None:
        found = decide(kb, plan, [(plan.rules[p], out) for p, out in judged])
        if len(plan.decisions) >= DECISIONS_KEPT:
            plan.decisions.clear()
        plan.decisions[key] = found
    return found


def decide(kb: KnowledgeBase, plan: Plan, judged: Judged) -> Decision:
    """The shared part of the answer for these verdicts, worked out in full."""
    fired = [(rp, out) for rp, out in judged if out[0]]
    rank = min([rp.rank for rp, _ in fired if rp.rank is not None])
    level = plan.level_at[rank]
    conclusions = conclude(kb, plan, fired, rank)
    missing = _missing(kb, plan, judged, rank)
    triage = {
        "level": level.id,
        "label": level.label,
        "action": level.action,
        "provisional": bool(missing),
        "rules": conclusions.setters,
        "citations": conclusions.citations,
    }
    before = {
        "triage": freeze(triage),
        "causes": conclusions.causes,
        "referrals": conclusions.referrals,
        "advice": conclusions.advice,
        "missing": freeze(missing),
    }
    return Decision(
        *before.values(),
        tuple((rp, out[1]) for rp, out in fired),
        tuple(path for _, out in fired for path in out[1]),
        freeze([rp.rule.id for rp, _ in fired]),
        {},
        encode_before_trace(before),
        encode_after_trace({"knowledge": plan.knowledge, "disclaimer": DISCLAIMER}),
    )


def _traces(decision: Decision, facts: Facts) -> tuple[list[dict[str, Any]], bytes]:
    # The trace also shows the values matched, so it is remembered per decision and values.
    key = tuple(map(facts.__getitem__, decision.matched))
    found = decision.traces.get(key)
    if found is None:
        trace = freeze([_trace(rp, matched, facts) for rp, matched in decision.fired])
        found = (trace, orjson.dumps(trace))
        if len(decision.traces) >= TRACES_KEPT:
            decision.traces.clear()
        decision.traces[key] = found
    return found


class Conclusions(NamedTuple):
    """What follows from a set of fired rules alone: level setters, citations, causes, referrals, advice."""

    setters: list[str]
    citations: list[dict[str, Any]]
    causes: list[dict[str, Any]]
    referrals: list[dict[str, Any]]
    advice: list[dict[str, Any]]


def conclude(kb: KnowledgeBase, plan: Plan, fired: Judged, rank: int) -> Conclusions:
    """Level-setting rules, citations, causes, referrals and advice for a set of fired rules."""
    setters = [rp for rp, _ in fired if rp.rank == rank]
    level = plan.level_at[rank]
    return Conclusions(
        freeze([rp.rule.id for rp in setters]),
        locators(plan, [c for rp in setters for c in rp.citations]),
        freeze(_causes(kb, plan, fired)),
        freeze(_referrals(kb, plan, level.id, setters, fired)),
        freeze(_advice(kb, plan, rank, fired)),
    )


def _causes(kb: KnowledgeBase, plan: Plan, fired: Judged) -> list[dict[str, Any]]:
    # cause id -> [score, evidence for, evidence against, rules, suggested]
    found: dict[str, list[Any]] = {}
    for rp, out in fired:
        for cause_id, weight in rp.rule.causes:
            entry = found.get(cause_id)
            if entry is None:
                entry = found[cause_id] = [0, [], [], [], False]
            entry[0] += weight
            if weight > 0:
                entry[1] += out[1]
                entry[4] = True
            else:
                entry[2] += out[1]
            entry[3].append(rp)
    # Only causes some finding speaks for are listed; evidence against lowers their rank.
    order = plan.cause_order
    ranked = sorted((cid for cid, e in found.items() if e[4]), key=lambda c: (-found[c][0], order[c]))
    out = []
    for cid in ranked:
        score, evidence_for, evidence_against, rules, _ = found[cid]
        cause = kb.causes[cid]
        cited = [*plan.cause_citations[cid], *(c for rp in rules for c in rp.citations)]
        out.append(
            {
                "id": cid,
                "name": cause.name,
                "about": cause.about,
                "strength": _strength(score),
                "score": score,
                "supporting": list(dict.fromkeys(evidence_for)),
                "conflicting": list(dict.fromkeys(evidence_against)),
                "rules": [rp.rule.id for rp in rules],
                "citations": locators(plan, cited),
            }
        )
    return out


def _strength(score: int) -> str:
    if score >= 4:
        return "strong"
    return "moderate" if score >= 2 else "weak"


def _referrals(kb: KnowledgeBase, plan: Plan, level: str, setters: list[RulePlan], fired: Judged) -> list[dict]:
    urgency = plan.urgency_order
    target = kb.levels[level].referral
    # to -> [urgency, tests, rule ids, citation ids]
    merged: dict[str, list[Any]] = {target: [level, [], [], []]} if setters else {}
    for rp in setters:
        entry = merged[target]
        entry[2].append(rp.rule.id)
        entry[3] += rp.citations
    for rp, _ in fired:
        for ref in rp.rule.referrals:
            entry = merged.get(ref.to)
            if entry is None:
                entry = merged[ref.to] = [ref.urgency, [], [], []]
            elif urgency[ref.urgency] < urgency[entry[0]]:
                entry[0] = ref.urgency
            entry[1] += ref.tests
            entry[2].append(rp.rule.id)
            entry[3] += rp.citations
    targets = plan.target_order
    tests = plan.test_order
    return [
        {
            "to": to,
            "urgency": entry[0],
            "tests": sorted(set(entry[1]), key=tests.__getitem__),
            "rules": list(dict.fromkeys(entry[2])),
            "citations": locators(plan, entry[3]),
        }
        for to, entry in sorted(merged.items(), key=lambda item: (urgency[item[1][0]], targets[item[0]]))
    ]


def _advice(kb: KnowledgeBase, plan: Plan, rank: int, fired: Judged) -> list[dict[str, Any]]:
    by_advice: dict[str, list[str]] = {}
    for rp, _ in fired:
        for aid in rp.rule.advice:
            by_advice.setdefault(aid, []).append(rp.rule.id)
    if not by_advice:
        return []
    out = []
    for aid, item in kb.advice.items():
        # Self-management advice is withheld when the patient must be seen more urgently.
        if aid in by_advice and rank >= plan.level_rank[item.up_to]:
            cited = locators(plan, plan.advice_citations[aid])
            out.append({"id": aid, "text": item.text, "rules": by_advice[aid], "citations": cited})
    return out


def _missing(kb: KnowledgeBase, plan: Plan, judged: Judged, rank: int) -> list[dict[str, Any]]:
    raises: dict[str, tuple[int, list[str]]] = {}
    for rp, out in judged:
        if out[0] is not None or rp.rank is None or rp.rank >= rank:
            continue
        for path in out[2]:
            best, rules = raises.get(path, (rp.rank, []))
            rules.append(rp.rule.id)
            raises[path] = (min(best, rp.rank), rules)
    order = plan.finding_order
    return [
        {
            "field": path,
            "question": kb.findings[path].question,
            "could_raise_to": plan.level_at[raises[path][0]].id,
            "rules": raises[path][1],
        }
        for path in sorted(raises, key=lambda p: (raises[p][0], order[p]))
    ]


def _trace(rp: RulePlan, matched: tuple[str, ...], facts: Facts) -> dict[str, Any]:
    return {
        "rule": rp.rule.id,
        "statement": rp.rule.statement,
        "matched": [{"field": path, "value": _plain(facts[path])} for path in matched],
    }


def _plain(value: Any) -> Any:
    if isinstance(value, PartialSet):
        return sorted(value.present)  # a matched partial set matched on what is known present
    return sorted(value) if isinstance(value, frozenset) else value
