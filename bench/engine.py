"""The engine in process: time per evaluation over the scenario mix, and its growth with knowledge size.

Synthetic knowledge bases (`factor` x the real rule count) are the bundled YAML with the rules list
grown, built by the loader's own builder, so every check still applies. Copy k of real rule R is R
with id `R.id~k` and `when: {all: [R.when, extra_1, extra_2]}`; an extra tests an ABNORMAL value of a
finding the real rules read (tri `is: present`, enum `is: V` neither normal nor unknown, set `has: V`,
int `at_least:` a quarter point above the minimum). Synthetic rule g takes pairs `g * STRIDE_1 % n` and
`(g * STRIDE_2 + g // n) % n` (shifting each lap, so combinations vary), each stepped past the findings
R tests and the other extra's. So a copy (the baseline's too) is never trivially true, false or
contradictory, touches the findings the real rules touch and fires only for more specific
combinations, adding cause weights and trace entries as a larger real base would.
"""

from __future__ import annotations

import copy
import gc
import math
import statistics
import time
from collections.abc import Iterable, Sequence
from typing import Any

from bench.stats import percentile
from service.engine import evaluate
from service.knowledge.loader import BUNDLED, KnowledgeBase, _Builder, read_docs

STRIDE_1 = 1
STRIDE_2 = 7  # made coprime with the number of pairs below, so the second cycle also reaches every pair
QUARTERS = (1, 2, 3)  # int thresholds: min + q/4 of the range


def bundled_docs() -> dict[str, Any]:
    """The parsed bundled YAML files, freshly read so callers may change them."""
    return read_docs(BUNDLED)


def read_facts(spec: Any, derived: dict[str, Any]) -> set[str]:
    """Findings a `when` condition (as written) tests, with {ref: name} expanded."""
    if not isinstance(spec, dict):
        return set()
    if "all" in spec or "any" in spec:
        return set().union(*(read_facts(s, derived) for s in spec.get("all", spec.get("any", ()))))
    if "ref" in spec:
        return read_facts(derived.get(spec["ref"]), derived)
    return {spec["fact"]} if "fact" in spec else set()


def abnormal_atoms(docs: dict[str, Any]) -> list[dict[str, Any]]:
    """One atom per (finding, abnormal value) pair over the findings the real rules read."""
    derived = docs["findings"].get("derived", {})
    read = set().union(*(read_facts(r["when"], derived) for r in docs["rules"]["rules"]))
    atoms: list[dict[str, Any]] = []
    for path, f in docs["findings"]["findings"].items():
        if path not in read:
            continue
        kind = f["kind"]
        if kind == "tri":
            atoms.append({"fact": path, "is": "present"})
        elif kind == "enum":
            skip = set(f.get("normal", ())) | set(f.get("unknown", ()))
            atoms += [{"fact": path, "is": v} for v in f["values"] if v not in skip]
        elif kind == "set":
            skip = set(f.get("unknown", ()))
            atoms += [{"fact": path, "has": v} for v in f["values"] if v not in skip]
        elif kind == "int":
            lo, hi = f["min"], f["max"]
            bounds = sorted({lo + max(1, (hi - lo) * q // 4) for q in QUARTERS})
            atoms += [{"fact": path, "at_least": n} for n in bounds]
    return atoms


def synthetic_docs(factor: int) -> dict[str, Any]:
    """The bundled docs with `factor` x the real rules (see the module docstring)."""
    if factor < 1:
        raise ValueError("factor must be at least 1")
    docs = bundled_docs()
    if factor == 1:
        return docs
    real = docs["rules"]["rules"]
    derived = docs["findings"].get("derived", {})
    pairs = abnormal_atoms(docs)
    n = len(pairs)
    stride_2 = next(s for s in range(STRIDE_2, STRIDE_2 + n + 1) if math.gcd(s, n) == 1)
    tested = [read_facts(r["when"], derived) for r in real]
    rules = list(real)
    g = 0
    for k in range(1, factor):
        for rule, own in zip(real, tested, strict=True):
            first = _next_free(pairs, g * STRIDE_1 % n, own)
            second = _next_free(pairs, (g * stride_2 + g // n) % n, own | {pairs[first]["fact"]})
            extras = [copy.deepcopy(pairs[first]), copy.deepcopy(pairs[second])]
            rules.append(
                {
                    **copy.deepcopy(rule),
                    "id": f"{rule['id']}~{k}",
                    "statement": f"{rule['statement']} (synthetic copy {k})",
                    "when": {"all": [copy.deepcopy(rule["when"]), *extras]},
                }
            )
            g += 1
    docs["rules"] = {**docs["rules"], "rules": rules}
    return docs


def _next_free(pairs: list[dict[str, Any]], start: int, taken: set[str]) -> int:
    """The first pair from `start` on (cyclically) whose finding is not in `taken`."""
    for step in range(len(pairs)):
        i = (start + step) % len(pairs)
        if pairs[i]["fact"] not in taken:
            return i
    raise ValueError(f"every finding is taken: {sorted(taken)}")


def synthetic_knowledge(factor: int) -> KnowledgeBase:
    """A knowledge base of `factor` x the real rule count, through every loader check."""
    return _Builder(synthetic_docs(factor)).build()


def _pass_ns(kb: KnowledgeBase, requests: Sequence[dict[str, Any]]) -> list[int]:
    """One timed evaluation per request, in ns (gc stays on: its pauses are part of the real cost)."""
    clock = time.perf_counter_ns
    out = []
    for body in requests:
        t0 = clock()
        evaluate(kb, body)
        out.append(clock() - t0)
    return out


def _summary(samples: Sequence[int]) -> dict[str, Any]:
    return {
        "evaluations": len(samples),
        "p50_us": percentile(samples, 50) / 1000,
        "p99_us": percentile(samples, 99) / 1000,
        "mean_us": statistics.fmean(samples) / 1000,
    }


def _warm_up(kb: KnowledgeBase, requests: Sequence[dict[str, Any]]) -> None:
    for _ in range(3):
        _pass_ns(kb, requests)
    gc.collect()


def time_evaluations(kb: KnowledgeBase, requests: Sequence[dict[str, Any]], repeat: int) -> dict[str, Any]:
    """p50, p99 and mean µs per evaluation over `repeat` passes of `requests`, after a warm-up; and every
    evaluation's time (`samples_us`, for the figure)."""
    _warm_up(kb, requests)
    samples: list[int] = []
    for _ in range(repeat):
        samples += _pass_ns(kb, requests)
    return {**_summary(samples), "samples_us": [t / 1000 for t in samples]}


def scaling(
    requests: Sequence[dict[str, Any]], factors: Iterable[int] = (1, 10, 100), repeat: int = 5
) -> list[dict[str, Any]]:
    """Time per evaluation per knowledge size; the smallest factor is the base for ratio and cost per rule.
    Passes alternate between sizes in rotating order, so machine noise lands on all sizes alike. The first
    half of `requests` counts as complete exams, the rest as partial (bench.workload.scenario_mix's order)."""
    sizes = sorted(set(factors))
    kbs = {f: synthetic_knowledge(f) for f in sizes}
    for kb in kbs.values():
        _warm_up(kb, requests)
    half = len(requests) // 2
    samples: dict[int, list[list[int]]] = {f: [] for f in sizes}
    for r in range(repeat):
        turn = r % len(sizes)
        for f in sizes[turn:] + sizes[:turn]:
            # One untimed pass first: a service runs one knowledge base, so the timed pass should not
            # pay for the caches the previous size filled (that cost doubled the 1x figure).
            _pass_ns(kbs[f], requests)
            samples[f].append(_pass_ns(kbs[f], requests))
    rows = []
    for f in sizes:
        passes = samples[f]
        every = [t for p in passes for t in p]
        row = {"factor": f, "rules": len(kbs[f].rules), **_summary(every)}
        if half and half < len(requests):
            row["complete_p50_us"] = percentile([t for p in passes for t in p[:half]], 50) / 1000
            row["partial_p50_us"] = percentile([t for p in passes for t in p[half:]], 50) / 1000
        rows.append(row)
    base = rows[0]
    for row in rows:
        row["ratio_p50"] = row["p50_us"] / base["p50_us"] if base["p50_us"] else math.nan
        added = row["rules"] - base["rules"]
        row["ns_per_added_rule"] = (row["p50_us"] - base["p50_us"]) * 1000 / added if added else None
    return rows
