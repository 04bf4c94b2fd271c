"""Evaluate a triage request against the knowledge base.

The level is the most urgent level that any fired rule sets (the baseline rule always fires).
A rule whose condition is unknown could still fire: if it would raise the level, its unknown
findings become the questions still to ask and the answer is provisional. Findings that contradict
each other (the knowledge base's conflicts) have their normal reading set aside as unknown first.

Which rules need judging comes from the compiled plan (service/engine/plan.py), and they are judged
on every call. What follows from their verdicts is worked out once per distinct set of verdicts
(with the conflicts found, the patient's place in the intended population, and whether any red
flag was asked) and shared read-only by every answer with the same (service/engine/frozen.py).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from service.engine.frozen import FrozenDict, freeze
from service.engine.logic import Facts, PartialSet
from service.engine.model import KnowledgeBase
from service.engine.plan import Plan, RulePlan, Verdict, judge, locators, plan_for

DISCLAIMER = (
    "Decision support for clinicians. It does not diagnose; the treating clinician decides. "
    "Each citation names its authority: the clinical articles, fitness material (which never raises "
    "the level on its own) or the service's own clinical policy where the articles are silent."
)

Judged = list[tuple[RulePlan, Verdict]]


class Context(NamedTuple):
    """What an answer depends on besides the verdicts of its rules."""

    conflicts: tuple[int, ...]  # positions of the conflicts found, in knowledge order
    population: str  # in | out | unknown: the patient's age against the intended population
    incomplete: bool  # no red-flag finding answered at all


def evaluate(kb: KnowledgeBase, request: dict[str, Any]) -> dict[str, Any]:
    """Evaluate validated request data; returns the response body as read-only plain data."""
    plan = plan_for(kb)
    seen = plan.read(request)
    found = conflicts_in(plan, seen.facts)
    if found:
        seen = plan.read(set_aside(request, [path for i in found for path in plan.conflicts[i].unknown]))
    context = Context(found, population(plan, seen.facts), incomplete(plan, seen.facts))
    decision = _decision(kb, plan, judge(plan, seen), context)
    return FrozenDict(answer_body(plan, decision, _trace(decision, seen.facts)))


def answer_body(plan: Plan, decision: Decision, trace: list[dict[str, Any]]) -> dict[str, Any]:
    """An answer's keys in order: the decision's parts, the patient's trace, the knowledge."""
    return {
        "triage": decision.triage,
        "scope": decision.scope,
        "causes": decision.causes,
        "referrals": decision.referrals,
        "advice": decision.advice,
        "missing": decision.missing,
        "conflicts": decision.conflicts,
        "trace": trace,
        "knowledge": plan.knowledge,
        "disclaimer": DISCLAIMER,
    }


# --- what an answer depends on besides its verdicts -------------------------------------------------


def conflicts_in(plan: Plan, facts: Facts) -> tuple[int, ...]:
    """Positions of the conflicts whose condition holds on these facts."""
    return tuple(i for i, check in enumerate(plan.conflict_checks) if check(facts)[0])


def set_aside(request: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """A copy of the request without the findings at `paths` (which then read as unknown)."""
    out = dict(request)
    for path in paths:
        *parents, leaf = path.split(".")
        node = out
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                break
            node[key] = child = dict(child)  # copied on the way down: the caller's request is left as it was
            node = child
        else:
            node.pop(leaf, None)
    return out


def population(plan: Plan, facts: Facts) -> str:
    scope = plan.scope
    if scope is None:
        return "in"
    age = facts.get(scope.age)
    if age is None:
        return "unknown"
    return "in" if age >= scope.min_age else "out"


def incomplete(plan: Plan, facts: Facts) -> bool:
    """No red-flag question answered: every red-flag finding unknown, or, for a set known only in part
    (from FHIR), none of its red-flag members known either way (policy SP-3 p3)."""
    return not any(_answered(facts[path], red) for path, red in plan.red_flag_findings)


def _answered(value: Any, red_flags: frozenset) -> bool:
    if isinstance(value, PartialSet):
        return not red_flags.isdisjoint(value.present | value.absent)
    return value is not None


# --- decisions --------------------------------------------------------------------------------------


class Decision(NamedTuple):
    """Everything an answer says that follows from the verdicts on the judged rules and the context alone,
    whoever the patient: read-only, shared by every answer with the same verdicts and context."""

    triage: dict[str, Any]
    scope: dict[str, Any]
    causes: list[dict[str, Any]]
    referrals: list[dict[str, Any]]
    advice: list[dict[str, Any]]
    missing: list[dict[str, Any]]
    conflicts: list[dict[str, Any]]
    traced: tuple[tuple[RulePlan, tuple[str, ...]], ...]  # each rule in the trace with the facts it matched
    matched: tuple[str, ...]  # those facts, rule after rule: their values key the traces
    traces: dict[tuple, list[dict[str, Any]]]  # values of `matched` -> the trace


# Bounds of the remembered tables, per knowledge base and process. A decision with its first trace
# takes about 21 KB (tracemalloc over the scenario mix), a further trace a few KB: at most about
# 512 x (21 + 7 x 3) KB, some 20 MB.
DECISIONS_KEPT = 512
TRACES_KEPT = 8  # per decision


def _decision(kb: KnowledgeBase, plan: Plan, judged: list[tuple[int, Verdict]], context: Context) -> Decision:
    # The verdicts on the judged rules (and the context) decide the level, causes, referrals, advice and
    # questions, so patients with the same verdicts share them; working them out is most of an
    # evaluation. The verdicts themselves are judged afresh on every call. The table is bounded.
    key = (tuple(judged), context)
    found = plan.decisions.get(key)
    if found is None:
        found = decide(kb, plan, [(plan.rules[p], out) for p, out in judged], context)
        if len(plan.decisions) >= DECISIONS_KEPT:
            plan.decisions.clear()
        plan.decisions[key] = found
    return found


def decide(kb: KnowledgeBase, plan: Plan, judged: Judged, context: Context) -> Decision:
    """The shared part of the answer for these verdicts and this context, worked out in full."""
    fired = [(rp, out) for rp, out in judged if out[0]]
    rank = min([rp.rank for rp, _ in fired if rp.rank is not None])
    level = plan.level_at[rank]
    setters = [rp for rp, _ in fired if rp.rank == rank]
    advice = _advice(kb, plan, rank, fired)
    shown = {rid for item in advice for rid in item["rules"]}
    traced = [(rp, out) for rp, out in fired if _in_trace(rp, rank, shown)]
    missing = _missing(kb, plan, judged, rank, context.conflicts)
    # Policy SP-3 p3: with no red-flag question answered and nothing urgent found, it is not a decision.
    said_incomplete = context.incomplete and rank >= plan.level_rank[kb.incomplete["up_to"]]
    label, action = (
        (kb.incomplete["label"], kb.incomplete["action"]) if said_incomplete else (level.label, level.action)
    )
    if context.population == "out":  # policy SP-8: the label says so too, not only `scope`
        label = f"{label} (under {plan.scope.min_age}, outside intended use)"
    triage = {
        "level": level.id,
        "label": label,
        "action": action,
        "provisional": bool(missing),
        "incomplete": said_incomplete,  # an urgent level found before any red-flag answer is a decision
        "rules": [rp.rule.id for rp in setters],
        "citations": locators(plan, [c for rp in setters for c in rp.citations]),
    }
    return Decision(
        triage=freeze(triage),
        scope=freeze(_scope(plan, context.population)),
        causes=freeze(_causes(kb, plan, fired, rank)),
        referrals=freeze(_referrals(kb, plan, level.id, setters, fired, context.incomplete)),
        advice=freeze(advice),
        missing=freeze(missing),
        conflicts=freeze(_conflicts(plan, context.conflicts)),
        traced=tuple((rp, out[1]) for rp, out in traced),
        matched=tuple(path for _, out in traced for path in out[1]),
        traces={},
    )


def _in_trace(rp: RulePlan, rank: int, shown: set[str]) -> bool:
    # A rule that reads no finding (the baseline, the safety net) is in the trace only when its effect is
    # in the answer: the baseline when it decides the level, the safety net when its advice is shown.
    if rp.reads:
        return True
    return rp.rank == rank or rp.rule.id in shown or bool(rp.rule.causes or rp.rule.referrals)


def _trace(decision: Decision, facts: Facts) -> list[dict[str, Any]]:
    # The trace also shows the values matched, so it is remembered per decision and values.
    key = tuple(map(facts.__getitem__, decision.matched))
    found = decision.traces.get(key)
    if found is None:
        found = freeze([trace_entry(rp, matched, facts) for rp, matched in decision.traced])
        if len(decision.traces) >= TRACES_KEPT:
            decision.traces.clear()
        decision.traces[key] = found
    return found


def _scope(plan: Plan, where: str) -> dict[str, Any]:
    scope = plan.scope
    if scope is None:
        return {"population": where, "note": "", "citations": []}
    return {"population": where, "note": scope.notes[where], "citations": locators(plan, plan.scope_citations)}


def _conflicts(plan: Plan, found: tuple[int, ...]) -> list[dict[str, Any]]:
    out = []
    for i in found:
        conflict = plan.conflicts[i]
        out.append(
            {
                "id": conflict.id,
                "statement": conflict.statement,
                "findings": list(dict.fromkeys(a.fact for a in conflict.when.atoms())),
                "read_as_unknown": list(conflict.unknown),
                "citations": locators(plan, [c.id for c in conflict.citations]),
            }
        )
    return out


# --- causes -----------------------------------------------------------------------------------------


class _Support:
    """The evidence for and against one cause in one answer."""

    def __init__(self) -> None:
        self.score = 0  # net weight
        self.best = 0  # the most specific supporting weight (policy SP-10)
        self.evidence_for: list[str] = []
        self.evidence_against: list[str] = []
        self.rules: list[RulePlan] = []  # every rule that weighed on it, in knowledge order
        self.rules_against: list[RulePlan] = []  # those that counted against it


def _causes(kb: KnowledgeBase, plan: Plan, fired: Judged, rank: int) -> list[dict[str, Any]]:
    found: dict[str, _Support] = {}
    for rp, out in fired:
        for cause_id, weight in rp.rule.causes:
            support = found.setdefault(cause_id, _Support())
            support.score += weight
            support.rules.append(rp)
            if weight > 0:
                support.best = max(support.best, weight)
                support.evidence_for += out[1]
            else:
                support.evidence_against += out[1]
                support.rules_against.append(rp)
    # Only causes with net support are listed (policy SP-10): the most specific evidence first, then
    # the net weight; at urgent or emergency, causes resting on fitness material alone come last.
    urgent = rank <= plan.level_rank.get("urgent", 0)
    listed = [cid for cid, s in found.items() if s.score > 0]
    order = plan.cause_order

    def key(cid: str) -> tuple:
        s = found[cid]
        return (urgent and cid in plan.fitness_causes, -s.best, -s.score, order[cid])

    out = []
    for cid in sorted(listed, key=key):
        s, cause = found[cid], kb.causes[cid]
        supporting = (rp for rp in s.rules if rp not in s.rules_against)
        cited = [*plan.cause_citations[cid], *(c for rp in supporting for c in rp.citations)]
        out.append(
            {
                "id": cid,
                "name": cause.name,
                "about": cause.about,
                "strength": _strength(s),
                "score": s.score,
                "supporting": list(dict.fromkeys(s.evidence_for)),
                "conflicting": list(dict.fromkeys(s.evidence_against)),
                "rules": [rp.rule.id for rp in s.rules],
                "rules_against": [rp.rule.id for rp in s.rules_against],
                "citations": locators(plan, cited),
            }
        )
    return out


def _strength(support: _Support) -> str:
    # Policy SP-10: strong needs a discriminating sign and a net weight of 3 or more.
    if support.best >= 3 and support.score >= 3:
        return "strong"
    return "moderate" if support.score >= 2 else "weak"


# --- referrals, advice, questions -------------------------------------------------------------------


def _referrals(
    kb: KnowledgeBase, plan: Plan, level: str, setters: list[RulePlan], fired: Judged, incomplete: bool
) -> list[dict[str, Any]]:
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
    # Policy SP-9: at urgent or emergency, a referral less urgent than the level stands only when it carries
    # tests, raised to the level; beside an emergency none does, and the tests an emergency department
    # arranges itself move to its referral. An incomplete assessment is no referral to self-management.
    rank = plan.level_rank[level]
    keep: dict[str, list[Any]] = {}
    for to, entry in merged.items():
        below = urgency[entry[0]] > urgency[level]
        if (incomplete and to == "self_management") or (below and rank == 0):
            merged[target][1] += [t for t in entry[1] if t in plan.emergency_tests] if below else []
            continue
        if below and not entry[1] and rank <= plan.level_rank.get("urgent", 0):
            continue
        if below and entry[1]:
            entry[0] = level
        keep[to] = entry
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
        for to, entry in sorted(keep.items(), key=lambda item: (urgency[item[1][0]], targets[item[0]]))
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


def _missing(
    kb: KnowledgeBase, plan: Plan, judged: Judged, rank: int, conflicts: tuple[int, ...]
) -> list[dict[str, Any]]:
    # field -> [most urgent level it could lead to, rules waiting on it,
    #           (most urgent level it alone could lead to, minus the findings already met in that rule)]
    never = (len(plan.level_rank), 0)
    raises: dict[str, list[Any]] = {}
    for rp, out in judged:
        if out[0] is not None or rp.rank is None or rp.rank >= rank:
            continue
        for path in out[2]:
            entry = raises.setdefault(path, [rp.rank, [], never])
            entry[0] = min(entry[0], rp.rank)
            entry[1].append(rp.rule.id)
            if path in out[3]:  # an abnormal answer to this finding alone would fire the rule
                entry[2] = min(entry[2], (rp.rank, -len(out[1])))
    # Policy SP-3 p2: a finding read as unknown because the record contradicts itself first; then a
    # question whose answer alone could raise the level before one that needs other answers too, the most
    # urgent of those first and, among them, the one completing a rule the findings already go furthest
    # towards; then the most urgent overall; then knowledge order.
    contradicted = {path for i in conflicts for path in plan.conflicts[i].unknown}
    order = plan.finding_order
    return [
        {
            "field": path,
            "question": kb.findings[path].question,
            "could_raise_to": plan.level_at[raises[path][0]].id,
            "rules": raises[path][1],
        }
        for path in sorted(raises, key=lambda p: (p not in contradicted, raises[p][2], raises[p][0], order[p]))
    ]


def trace_entry(rp: RulePlan, matched: tuple[str, ...], facts: Facts) -> dict[str, Any]:
    return {
        "rule": rp.rule.id,
        "statement": rp.rule.statement,
        "matched": [{"field": path, "value": _plain(facts[path])} for path in matched],
    }


def _plain(value: Any) -> Any:
    if isinstance(value, PartialSet):
        return sorted(value.present)  # a matched partial set matched on what is known present
    return sorted(value) if isinstance(value, frozenset) else value
