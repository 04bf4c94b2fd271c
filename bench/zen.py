"""Our engine beside a standard one: the level rules as a GoRules `zen-engine` decision table, in process.

The table is GENERATED from the knowledge base, so it cannot drift from the rules it stands for:

- One row per conjunction of each level-setting rule's condition in disjunctive normal form
  (derived `ref:` conditions are already expanded by the loader). Rows are ordered by level rank,
  most urgent first, then knowledge order; an always-true row (the baseline) is last in its rank.
  Hit policy "first" then returns the most urgent level whose rule holds, which is our level.
- Input: the engine's own facts (`build_facts`, so unknown markers and the derived sensation areas
  mean the same on both sides; contradicted normal readings set aside as the engine does) flattened
  into one JSON object, key = the finding path with dots as
  underscores (`findings.slr.result` -> `findings_slr_result`); sets are lists, unknown is null.
- One input column per finding a level rule reads. Cells: `is` -> `"v"`, `in` -> `"a", "b"`
  (unary tests, false on null); `has` -> `$ != null and contains($, "v")`, `has_any` ->
  `$ != null and some($, # in ["a", "b"])`, `at_least` -> `$ != null and $ >= n`, `below` -> `$ != null
  and $ < n`, `unknown` -> `$ == null`; a count (`at_least: n, of: [...]`) becomes one conjunction per
  choice of n of its items. With `$` null,
  zen's `contains`, `some`, `"v" in $` and `>=` raise instead of answering false; a decision table
  happens to count a raising cell as no match, but the guard states the intent rather than lean on
  a swallowed error (it costs nothing measurable). Several atoms on one finding in one conjunction
  are joined with `and`, without brackets (zen reads a cell that opens with one as an interval).
- Outputs: `level`, and the id of the rule the row came from (for checking).

Why this is exact: rule conditions have no negation and JSON requests carry only complete sets,
so a Kleene condition is TRUE iff some conjunction of its DNF has every atom TRUE, and an atom on
an unknown (null) fact is never TRUE; the level is the most urgent level of a TRUE rule.

What is timed differs, and the names say so: ours is `evaluate(kb, request)`, the full answer
(level, causes, referrals, advice, questions still to ask, trace, citations); the engine has no
cheaper level-only entry point, so there is no like-for-like "ours, level only" figure. Theirs is
`zen_input` (our `build_facts`, flattened) plus zen's evaluation, which yields the level only.
zen is timed on its fast path, `ZenEngine.evaluate(key, input)` with the table in a static loader
(`KeyedDecision`); `ZenDecision.evaluate` starts a tokio runtime per call and is reported apart.

    .venv/bin/python -m bench.zen [repeat]
"""

from __future__ import annotations

import gc
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from itertools import combinations, product
from typing import Any, Protocol

import zen

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


def _expression(atom: Atom) -> str:
    """The atom as a zen expression on `$`, false (not an error) when the fact is null."""
    value = _literal(atom.value)
    if atom.op == "is":
        return f"$ == {value}"
    if atom.op == "in":
        return f"$ in {value}"
    if atom.op == "has":
        return f"$ != null and contains($, {value})"
    if atom.op == "has_any":
        return f"$ != null and some($, # in {value})"
    if atom.op == "at_least":
        return f"$ != null and $ >= {value}"
    if atom.op == "below":
        return f"$ != null and $ < {value}"
    if atom.op == "unknown":
        return "$ == null"
    raise ValueError(f"unknown operator {atom.op!r}")


def _cell(atoms: Sequence[Atom]) -> str:
    """A unary test where the editor's idiom is null-safe (is, in), else an expression on `$`."""
    if len(atoms) == 1 and atoms[0].op == "is":
        return _literal(atoms[0].value)
    if len(atoms) == 1 and atoms[0].op == "in":
        return ", ".join(json.dumps(v) for v in sorted(atoms[0].value))
    if len(atoms) == 1:
        return _expression(atoms[0])
    # No brackets: zen reads a cell that opens with one as an interval. Each part is a conjunction already.
    return " and ".join(_expression(a) for a in atoms)


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
    return {
        "contentType": "application/vnd.gorules.decision",
        "nodes": [
            {"id": "request", "type": "inputNode", "name": "Request", "position": {"x": 0, "y": 0}},
            {
                "id": TABLE_NODE,
                "type": "decisionTableNode",
                "name": "Triage level",
                "position": {"x": 250, "y": 0},
                "content": content,
            },
            {"id": "response", "type": "outputNode", "name": "Response", "position": {"x": 500, "y": 0}},
        ],
        "edges": [
            {"id": "request-table", "type": "edge", "sourceId": "request", "targetId": TABLE_NODE},
            {"id": "table-response", "type": "edge", "sourceId": TABLE_NODE, "targetId": "response"},
        ],
    }


class Decision(Protocol):
    def evaluate(self, context: dict[str, Any]) -> Any: ...


class KeyedDecision:
    """The table loaded into one `ZenEngine` under a key, evaluated with `engine.evaluate(key, context)`.

    This is zen's fast in-process path. `ZenDecision.evaluate` (from `create_decision`) builds a new
    tokio runtime, with its worker threads, on every call; it gives the same answers, several times
    slower, so `compare` reports it apart and does not use it for the ratio.
    """

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


def zen_level(decision: Decision, kb: KnowledgeBase, request: dict[str, Any]) -> str:
    return decision.evaluate(zen_input(kb, request))["result"]["level"]


def _percentile(samples: Sequence[int], q: float) -> float:
    """Nearest-rank percentile: a value that was actually measured."""
    ordered = sorted(samples)
    return float(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)])


def _timed(calls: Sequence[Callable[[], object]], samples: Sequence[list[int]]) -> None:
    clock = time.perf_counter_ns
    for call, out in zip(calls, samples, strict=True):
        t0 = clock()
        call()
        out.append(clock() - t0)


def _p(samples: Sequence[int], q: float) -> float:
    return _percentile(samples, q) / 1000


def compare(kb: KnowledgeBase, requests: Sequence[dict[str, Any]], repeat: int) -> dict[str, Any]:
    """µs per decision: ours (the full answer) against zen's (the level only), over `repeat` rounds.

    A warm-up pass also counts agreement. Each round runs every request through both sides back to
    back, the side going first alternating by round, so machine noise hits both alike. zen's slow
    `ZenDecision.evaluate` path is timed afterwards, on its own, because the threads it starts and
    stops on every call would disturb whichever side ran next to it.
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
    return {
        "rows": len(table["nodes"][1]["content"]["rules"]),
        "requests": len(requests),
        "decisions_timed": len(ours),  # per side
        "agree": agree,
        "ours_full_answer_p50_us": _p(ours, 50),
        "ours_full_answer_p99_us": _p(ours, 99),
        "zen_level_only_p50_us": _p(theirs, 50),
        "zen_level_only_p99_us": _p(theirs, 99),
        "ratio_ours_full_answer_over_zen_level_only_p50": _p(ours, 50) / _p(theirs, 50),
        "zen_decision_object_level_only_p50_us": _p(slow, 50),
        "zen_decision_object_level_only_p99_us": _p(slow, 99),
        "ours_computes": "evaluate(kb, request): facts, every rule, level, causes, referrals, advice, "
        "questions still to ask, trace, citations; the engine has no level-only entry point",
        "zen_computes": "facts flattened to JSON (zen_input), then engine.evaluate(key, input) on the "
        "decision table: the level only",
        "zen_decision_object_computes": "the same, through ZenDecision.evaluate (create_decision), "
        "which starts a new tokio runtime per call",
    }


def main(argv: Sequence[str] | None = None) -> int:
    from bench.workload import scenario_mix
    from service.knowledge import load_knowledge

    args = sys.argv[1:] if argv is None else list(argv)
    repeat = int(args[0]) if args else 20
    print(json.dumps(compare(load_knowledge(), scenario_mix(), repeat), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
