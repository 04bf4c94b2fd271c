"""The knowledge base compiled for evaluation: rules found from the reported values by bit arithmetic.

Checking every rule on every call costs time in proportion to the knowledge base, and most rules have
nothing to do with a given patient. Conditions have no "not", which the index relies on:

- A rule's condition is a conjunction of groups: each part of its top-level `all` (nested `all`s
  flattened, a count being one group) is a group, and a condition that is not an `all` is one group.
  A group can be true
  only if one of its atoms is, so a rule can fire only when every group has a true atom. It can be
  unknown only when every group has a true atom or reads an unknown fact.
- Each group is one bit of a big integer. A rule's groups are adjacent bits, followed by one
  spare bit that is always 0. Each fact value that makes an atom true (an enum or tri value, a set
  member, an integer threshold) has a mask of the groups it covers. So does each fact, for when it
  is unknown: the groups it leaves open, and those an `unknown` atom on it makes true. A request ORs
  the masks of its values, and then the unknown facts' masks.
- Adding a 1 at the lowest bit of every rule carries into the spare bit exactly when all of the
  rule's group bits are 1. One addition and one AND therefore give every rule whose groups are all
  covered, however many rules there are, in C-level integer arithmetic.

The request is read, and its masks ORed, by a function generated for the findings table (reader.py).
So only rules that may be true, or unknown and able to raise the level, are judged. Each is still
judged by its own three-valued check (logic.py), except a conjunction of
atoms whose atoms are all true, whose verdict is known. A set known only in part (from FHIR)
bypasses the index, and every rule is checked. tests/test_engine_equivalence.py shows both
paths give the answers of the original one-pass engine (tests/reference_engine.py).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from service.engine.frozen import FrozenList, freeze
from service.engine.logic import All, Atom, Condition, Facts, Outcome
from service.engine.model import Conflict, KnowledgeBase, Level, Rule, Scope
from service.engine.reader import EMPTY_SET, THRESHOLDS, Reader, Scan, compile_reader

# (truth, matched, open, alone) as in logic.Outcome, as a tuple.
Verdict = tuple[bool | None, tuple[str, ...], tuple[str, ...], tuple[str, ...]]
Check = Callable[[Facts], Verdict]
_FALSE: Verdict = (False, (), (), ())


@dataclass(frozen=True, slots=True)
class RulePlan:
    position: int  # in knowledge order: answers list rules in this order
    rule: Rule
    rank: int | None  # of the level it sets; None if it sets none
    citations: tuple[str, ...]  # citation ids, first occurrence order
    check: Check  # logic.py's three-valued check, remembered per combination of the values it reads
    reads: tuple[str, ...]  # the facts its condition reads (none: it always holds)
    when_all_true: Verdict | None  # a conjunction of atoms alone: its verdict once every atom is true


@dataclass
class Plan:
    rules: tuple[RulePlan, ...]
    read: Reader = None  # type: ignore[assignment]  # request -> Scan, compiled by compile_plan (reader.py)
    reader_source: str = ""
    lowest: int = 0  # the lowest group bit of every rule
    spare: int = 0  # the spare bit above every rule's groups
    rule_at: dict[int, int] = field(default_factory=dict)  # spare bit index -> rule position
    unknown_masks: dict[str, int] = field(default_factory=dict)  # fact -> groups with an atom it leaves open
    unknown_true: dict[str, int] = field(default_factory=dict)  # fact -> groups an `unknown` atom on it makes true
    raising: dict[int, int] = field(default_factory=dict)  # rank -> spare bits of rules setting a more urgent level
    locators: dict[str, dict[str, Any]] = field(default_factory=dict)
    level_rank: dict[str, int] = field(default_factory=dict)
    level_at: dict[int, Level] = field(default_factory=dict)  # rank -> level
    finding_order: dict[str, int] = field(default_factory=dict)
    cause_order: dict[str, int] = field(default_factory=dict)
    urgency_order: dict[str, int] = field(default_factory=dict)
    target_order: dict[str, int] = field(default_factory=dict)
    test_order: dict[str, int] = field(default_factory=dict)
    cause_citations: dict[str, tuple[str, ...]] = field(default_factory=dict)
    advice_citations: dict[str, tuple[str, ...]] = field(default_factory=dict)
    knowledge: dict[str, str] = field(default_factory=dict)  # the answer's knowledge block (read-only)
    conflicts: tuple[Conflict, ...] = ()
    conflict_checks: tuple[Check, ...] = ()
    scope: Scope | None = None
    scope_citations: tuple[str, ...] = ()
    # Findings with a red-flag value, and those values: all unknown = nothing asked (policy SP-3 p3).
    red_flag_findings: tuple[tuple[str, frozenset], ...] = ()
    fitness_causes: frozenset[str] = frozenset()  # causes whose own citations are all fitness material
    emergency_tests: frozenset[str] = frozenset()  # tests an emergency department arranges itself
    decisions: dict[tuple, Any] = field(default_factory=dict)  # see triage._decision


def plan_for(kb: KnowledgeBase) -> Plan:
    """The compiled plan of `kb`, built on first use and kept on the (immutable) knowledge base."""
    plan = kb.__dict__.get("_plan")
    if plan is None:
        plan = compile_plan(kb)
        object.__setattr__(kb, "_plan", plan)  # a cache, not state: the same kb always compiles the same
    return plan


def compile_plan(kb: KnowledgeBase) -> Plan:
    level_rank = {lid: lv.rank for lid, lv in kb.levels.items()}
    rules = tuple(_rule_plan(i, rule, level_rank) for i, rule in enumerate(kb.rules))
    plan = Plan(
        rules=rules,
        locators={cid: freeze(c.locator()) for cid, c in kb.citations.items()},
        level_rank=level_rank,
        level_at={lv.rank: lv for lv in kb.levels.values()},
        finding_order={path: i for i, path in enumerate(kb.findings)},
        cause_order={cid: i for i, cid in enumerate(kb.causes)},
        urgency_order={u: i for i, u in enumerate(kb.urgencies)},
        target_order={t: i for i, t in enumerate(kb.referral_targets)},
        test_order={t: i for i, t in enumerate(kb.tests)},
        cause_citations={cid: tuple(c.id for c in cause.citations) for cid, cause in kb.causes.items()},
        advice_citations={aid: tuple(c.id for c in item.citations) for aid, item in kb.advice.items()},
        knowledge=freeze({"version": kb.version, "sha256": kb.sha256}),
        conflicts=kb.conflicts,
        conflict_checks=tuple(_with_truth_table(_compile(c.when), _reads(c.when)) for c in kb.conflicts),
        scope=kb.scope,
        scope_citations=tuple(c.id for c in kb.scope.citations) if kb.scope else (),
        red_flag_findings=tuple((path, f.red_flags) for path, f in kb.findings.items() if f.red_flags),
        emergency_tests=frozenset(kb.emergency_tests),
        fitness_causes=frozenset(
            cid for cid, cause in kb.causes.items() if all(c.authority == "fitness" for c in cause.citations)
        ),
    )
    masks = _lay_out(plan)
    plan.read, plan.reader_source = compile_reader(kb.findings, masks, plan.unknown_masks, plan.unknown_true)
    return plan


# --- compiling rules -----------------------------------------------------------------------------


def _rule_plan(position: int, rule: Rule, level_rank: dict[str, int]) -> RulePlan:
    atoms = rule.when.atoms()
    conjunction = bool(atoms) and all(isinstance(part, Atom) for part in _conjuncts(rule.when))
    reads = _reads(rule.when)
    if not atoms:
        when_all_true = _verdict(rule.when.check({}))  # no groups: "all of them covered" always holds
    elif conjunction:
        when_all_true = (True, reads, (), ())
    else:
        when_all_true = None
    return RulePlan(
        position=position,
        rule=rule,
        rank=level_rank[rule.level] if rule.level else None,
        citations=tuple(dict.fromkeys(c.id for c in rule.citations)),
        check=_with_truth_table(_compile(rule.when), reads),
        reads=reads,
        when_all_true=when_all_true,
    )


def _reads(condition: Condition) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a.fact for a in condition.atoms()))


# Entries of one rule's truth table before it is emptied and refilled: a verdict and its key take
# about 200 bytes, so 42 rules hold 2 MB at most (the scenario mix needs 34 entries in all).
VERDICTS_KEPT = 256


def _with_truth_table(check: Check, reads: tuple[str, ...]) -> Check:
    """`check`, remembered per combination of the values of the facts it reads.

    A verdict depends on those values alone, and findings have few values each (enums, small
    integers, sets of a handful of members), so a rule meets few combinations: its truth table fills
    as they are first seen and then answers in one lookup. Values are hashable (facts are None,
    str, int, frozenset or PartialSet); the table is bounded.
    """
    if not reads:
        return check
    values_of = operator.itemgetter(*reads)
    table: dict[Any, Verdict] = {}

    def remembered(facts: Facts) -> Verdict:
        key = values_of(facts)
        out = table.get(key)
        if out is None:
            out = check(facts)
            if len(table) >= VERDICTS_KEPT:
                table.clear()
            table[key] = out
        return out

    remembered.table = table  # type: ignore[attr-defined]  # for tests
    return remembered


def _conjuncts(condition: Condition) -> Iterable[Condition]:
    """The parts of a condition's top-level `all`, nested `all`s flattened."""
    if isinstance(condition, All):
        for item in condition.items:
            yield from _conjuncts(item)
    else:
        yield condition


def _groups(condition: Condition) -> list[tuple[Atom, ...]]:
    # Each conjunct needs one of its atoms true (monotone logic: `any` of nothing true is not true).
    return [part.atoms() for part in _conjuncts(condition) if part.atoms()]


def _verdict(outcome: Outcome) -> Verdict:
    return (outcome.truth, outcome.matched, outcome.open, outcome.alone)


def _compile(condition: Condition) -> Check:
    """logic.py's three-valued check of the condition, as a verdict tuple."""
    check = condition.check
    return lambda facts: _verdict(check(facts))


# --- the index -----------------------------------------------------------------------------------


def _lay_out(plan: Plan) -> dict[str, dict[Any, int]]:
    """Give every group a bit and every rule a spare bit; return fact -> index key -> group mask."""
    masks: dict[str, dict[Any, int]] = {}
    unknown: dict[str, int] = {}
    bit = 0
    for rp in plan.rules:
        # A rule without groups (one that reads no fact) gets only its spare bit, with the added 1
        # on it: it is always among the covered ones, in its place in knowledge order.
        plan.lowest |= 1 << bit
        for group in _groups(rp.rule.when):
            for atom in group:
                if atom.op == "unknown":  # true exactly when its fact is unknown, never open
                    plan.unknown_true[atom.fact] = plan.unknown_true.get(atom.fact, 0) | 1 << bit
                    continue
                unknown[atom.fact] = unknown.get(atom.fact, 0) | 1 << bit
                for key in _index_keys(atom):
                    table = masks.setdefault(atom.fact, {})
                    table[key] = table.get(key, 0) | 1 << bit
            bit += 1
        plan.spare |= 1 << bit
        plan.rule_at[bit] = rp.position
        for rank in range(len(plan.level_rank) + 1):
            if rp.rank is not None and rp.rank < rank:
                plan.raising[rank] = plan.raising.get(rank, 0) | 1 << bit
        bit += 1
    plan.unknown_masks = unknown
    return masks


def _index_keys(atom: Atom) -> tuple[Any, ...]:
    if atom.op in ("is", "has"):
        return (atom.value,)
    if atom.op in THRESHOLDS:
        return ((atom.op, atom.value),)
    if atom.op == "empty":
        return (EMPTY_SET,)
    return tuple(atom.value)  # in, has_any: any listed value or member


# --- evaluation ----------------------------------------------------------------------------------


def judge(plan: Plan, seen: Scan) -> list[tuple[int, Verdict]]:
    """(position, verdict) of every true rule and every unknown rule that would raise the level above
    them, in knowledge order. Rules left out are false, or unknown and unable to raise it."""
    rules, facts = plan.rules, seen.facts
    if seen.partial:
        return [(rp.position, _verdict(rp.rule.when.check(facts))) for rp in rules]
    rule_at = plan.rule_at
    judged = []
    rank = len(plan.level_rank)  # one past the least urgent: the baseline rule always lowers it
    # Rules with a true atom in every group, in knowledge order (bits are laid out in that order).
    full = bits = (seen.covered + plan.lowest) & plan.spare
    while bits:
        low = bits & -bits
        rp = rules[rule_at[low.bit_length() - 1]]
        out = rp.when_all_true or rp.check(facts)
        judged.append((rp.position, out))
        if out[0] and rp.rank is not None and rp.rank < rank:
            rank = rp.rank
        bits ^= low
    if not seen.open:
        return judged
    # Rules still open that would raise the level: they interleave with the ones above.
    bits = ((seen.covered | seen.open) + plan.lowest) & plan.spare & ~full & plan.raising.get(rank, 0)
    if bits:
        while bits:
            low = bits & -bits
            rp = rules[rule_at[low.bit_length() - 1]]
            judged.append((rp.position, rp.check(facts)))
            bits ^= low
        judged.sort()
    return judged


def locators(plan: Plan, ids: Iterable[str]) -> list[dict[str, Any]]:
    """Citation locators, each once, in first-seen order; read-only, shared by every answer."""
    table = plan.locators
    return FrozenList([table[cid] for cid in dict.fromkeys(ids)])
