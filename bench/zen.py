"""Our engine beside a standard one: the level rules as a GoRules `zen-engine` decision table, in process.

The table is GENERATED from the knowledge base, so it cannot drift from the rules: one row per
conjunction of each level-setting rule's condition in disjunctive normal form, most urgent level
first (then knowledge order, an always-true row last in its rank), hit policy "first". That is exact
because conditions have no negation and JSON requests carry only complete sets: a Kleene condition is
TRUE iff some conjunction has every atom TRUE, and an atom on an unknown (null) fact never is. Input:
the engine's own facts (`build_facts`, contradicted normal readings set aside as the engine does),
flat, dots as underscores, sets as lists, unknown as null; one input column per finding read.

Timed: ours is `evaluate(kb, request)`, the full answer (there is no level-only entry point); zen's is
`zen_input` plus `ZenEngine.evaluate(key, input)`, its fast path, the level only. `ZenDecision.evaluate`
starts a tokio runtime per call and is reported apart.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Sequence
from itertools import combinations, product
from typing import Any

import zen

from bench.stats import percentile
from service.engine import evaluate
from service.engine.facts import build_facts
from service.engine.logic import All, Any_, AtLeast, Atom, Condition, PartialSet
from service.engine.model import KnowledgeBase
from service.engine.triage import set_aside

TABLE_NODE = "triage-level"


def _key(path: str) -> str:
    return path.replace(".", "_")


def _dnf(cond: Condition) -> list[tuple[Atom, ...]]:
    """The condition as a disjunction of conjunctions of atoms; All(()) is the one empty conjunction."""
    if isinstance(cond, Atom):
        return [(cond,)]
    if isinstance(cond, Any_):
        return [term for item in cond.items for term in _dnf(item)]
    if isinstance(cond, All):
        return _conjoin(cond.items)
    if isinstance(cond, AtLeast):  # any n of the items: one conjunction per choice of n
        return [term for chosen in combinations(cond.items, cond.n) for term in _conjoin(chosen)]
    raise TypeError(f"not a condition: {cond!r}")


def _conjoin(items: Sequence[Condition]) -> list[tuple[Atom, ...]]:
    terms: list[tuple[Atom, ...]] = [()]
    for item in items:
        terms = [a + b for a, b in product(terms, _dnf(item))]
    return [tuple(dict.fromkeys(term)) for term in terms]


def _literal(value: Any) -> str:
    return json.dumps(sorted(value) if isinstance(value, frozenset) else value)


# Each operator as a zen expression on `$`, false (not an error) when the fact is null.
EXPRESSIONS = {
    "is": "$ == {}",
    "in": "$ in {}",
    "has": "$ != null and contains($, {})",
    "has_any": "$ != null and some($, # in {})",
    "at_least": "$ != null and $ >= {}",
    "below": "$ != null and $ < {}",
    "unknown": "$ == null",
}


def _cell(atoms: Sequence[Atom]) -> str:
    """A unary test where zen's idiom is null-safe (is, in), else expressions on `$` joined with `and`, no
    brackets (zen reads a cell that opens with one as an interval)."""
    if len(atoms) == 1 and atoms[0].op == "is":
        return _literal(atoms[0].value)
    if len(atoms) == 1 and atoms[0].op == "in":
        return ", ".join(json.dumps(v) for v in sorted(atoms[0].value))
    return " and ".join(EXPRESSIONS[a.op].format(_literal(a.value)) for a in atoms)


def decision_table(kb: KnowledgeBase) -> dict[str, Any]:
    """The JDM document: input -> one "first"-hit decision table -> output, generated from `kb`."""
    setters = [(i, rule) for i, rule in enumerate(kb.rules) if rule.level]
    rows = [
        (kb.levels[rule.level].rank, not term, i, rule, n, term)
        for i, rule in setters
        for n, term in enumerate(dict.fromkeys(_dnf(rule.when)))
    ]
    rows.sort(key=lambda r: r[:3])
    read = {atom.fact for *_, term in rows for atom in term}
    paths = [p for p in kb.findings if p in read]
    if len({_key(p) for p in kb.findings}) != len(kb.findings):
        raise ValueError("two finding paths flatten to the same input key")
    inputs = [{"id": _key(p), "name": p, "type": "expression", "field": _key(p)} for p in paths]
    outputs = [{"id": f, "name": f, "type": "expression", "field": f} for f in ("level", "rule")]
    table_rows = []
    for _rank, _always, _i, rule, n, term in rows:
        by_fact: dict[str, list[Atom]] = {}
        for atom in term:
            by_fact.setdefault(atom.fact, []).append(atom)
        row = {"_id": f"{rule.id}/{n}"}
        row |= {_key(p): _cell(by_fact[p]) if p in by_fact else "" for p in paths}
        row |= {"level": json.dumps(rule.level), "rule": json.dumps(rule.id)}
        table_rows.append(row)
    content = {"hitPolicy": "first", "inputs": inputs, "outputs": outputs, "rules": table_rows}
    nodes = [("request", "inputNode", "Request", {}), ("response", "outputNode", "Response", {})]
    nodes.insert(1, (TABLE_NODE, "decisionTableNode", "Triage level", {"content": content}))
    return {
        "contentType": "application/vnd.gorules.decision",
        "nodes": [
            {"id": id_, "type": kind, "name": name, "position": {"x": 250 * i, "y": 0}, **more}
            for i, (id_, kind, name, more) in enumerate(nodes)
        ],
        "edges": [
            {"id": "request-table", "type": "edge", "sourceId": "request", "targetId": TABLE_NODE},
            {"id": "table-response", "type": "edge", "sourceId": TABLE_NODE, "targetId": "response"},
        ],
    }


class KeyedDecision:
    """The table loaded into one `ZenEngine` under a key, evaluated with `engine.evaluate(key, context)`:
    zen's fast in-process path. `ZenDecision.evaluate` (`decision_object`) builds a new tokio runtime,
    with its threads, on every call: the same answers several times slower, so it is reported apart."""

    def __init__(self, table: dict[str, Any]) -> None:
        self._engine = zen.ZenEngine({"loader": {"type": "static", "content": {TABLE_NODE: table}}})
        self._engine.get_decision(TABLE_NODE).validate()

    def evaluate(self, context: dict[str, Any]) -> Any:
        return self._engine.evaluate(TABLE_NODE, context)


def decision_object(table: dict[str, Any]) -> zen.ZenDecision:
    """The same table as a `ZenDecision` (create_decision): the API's obvious path, and its slow one."""
    decision = zen.ZenEngine().create_decision(json.dumps(table))
    decision.validate()
    return decision


def zen_input(kb: KnowledgeBase, request: dict[str, Any]) -> dict[str, Any]:
    """The decision's input: our facts, flat, sets as lists, unknown as null (see the module doc)."""
    out: dict[str, Any] = {}
    facts = build_facts(request, kb.findings)
    conflicting = [path for c in kb.conflicts if c.when.check(facts).truth for path in c.unknown]
    if conflicting:  # contradicted normal readings are set aside, as the engine does
        facts = build_facts(set_aside(request, conflicting), kb.findings)
    for path, value in facts.items():
        if isinstance(value, frozenset):
            value = list(value)
        elif isinstance(value, PartialSet):  # FHIR only; a table cannot say "unknown member" this way
            raise TypeError(f"{path}: partial sets are not encoded for zen")
        out[_key(path)] = value
    return out


def zen_level(decision: KeyedDecision | zen.ZenDecision, kb: KnowledgeBase, request: dict[str, Any]) -> str:
    return decision.evaluate(zen_input(kb, request))["result"]["level"]


def _timed(calls: Sequence[Callable[[], object]], samples: Sequence[list[int]]) -> None:
    clock = time.perf_counter_ns
    for call, out in zip(calls, samples, strict=True):
        t0 = clock()
        call()
        out.append(clock() - t0)


def _p(samples: Sequence[int], q: float) -> float:
    return percentile(samples, q) / 1000


def compare(kb: KnowledgeBase, requests: Sequence[dict[str, Any]], repeat: int) -> dict[str, Any]:
    """µs per decision: ours (the full answer) against zen's (the level only), over `repeat` rounds.

    A warm-up pass also counts agreement. Each round runs every request through both sides back to back,
    the side going first alternating by round, so machine noise hits both alike. The slow path is timed
    afterwards, alone: the threads it starts and stops on every call would disturb the side next to it.
    """
    table = decision_table(kb)
    keyed, obj = KeyedDecision(table), decision_object(table)
    agree = 0
    for r in requests:
        ours_level = evaluate(kb, r)["triage"]["level"]
        agree += ours_level == zen_level(keyed, kb, r) == zen_level(obj, kb, r)
    gc.collect()
    ours: list[int] = []
    theirs: list[int] = []
    for round_ in range(repeat):
        for r in requests:
            calls = [lambda r=r: evaluate(kb, r), lambda r=r: zen_level(keyed, kb, r)]
            samples = [ours, theirs]
            if round_ % 2:
                calls.reverse()
                samples.reverse()
            _timed(calls, samples)
    slow: list[int] = []
    for _ in range(repeat):
        for r in requests:
            _timed([lambda r=r: zen_level(obj, kb, r)], [slow])
    out = {"rows": len(table["nodes"][1]["content"]["rules"]), "requests": len(requests), "agree": agree}
    out["decisions_timed"] = len(ours)  # per side
    timed = {"ours_full_answer": ours, "zen_level_only": theirs, "zen_decision_object_level_only": slow}
    for name, samples in timed.items():
        out |= {f"{name}_p{q}_us": _p(samples, q) for q in (50, 99)}
    return out | {"ratio_ours_full_answer_over_zen_level_only_p50": _p(ours, 50) / _p(theirs, 50)}
