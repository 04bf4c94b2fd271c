"""The in-process engine benchmark: its synthetic knowledge bases are valid and like the real one.

No timing is asserted; a tiny scaling run only checks the shape of the report.
"""

import pytest

from bench.engine import bundled_docs, scaling, synthetic_docs, synthetic_knowledge
from bench.workload import scenario_mix
from service.engine import evaluate
from service.knowledge import load_knowledge


def facts_in(spec, derived):
    """Findings a condition as written tests (written apart from bench.engine to check it)."""
    if "fact" in spec:
        return {spec["fact"]}
    if "ref" in spec:
        return facts_in(derived[spec["ref"]], derived)
    items = spec.get("all", []) + spec.get("any", [])
    return set().union(*(facts_in(s, derived) for s in items))


@pytest.fixture(scope="module")
def mix():
    return scenario_mix()


@pytest.fixture(scope="module")
def docs10():
    return synthetic_docs(10)


def test_ten_times_the_rules(docs10):
    real = bundled_docs()["rules"]["rules"]
    rules = docs10["rules"]["rules"]
    assert len(rules) == 10 * len(real)
    assert rules[: len(real)] == real
    ids = [r["id"] for r in rules]
    assert len(set(ids)) == len(ids)
    assert len(synthetic_knowledge(10).rules) == 10 * len(real)


def test_synthetic_rules_read_only_real_findings_and_are_more_specific(docs10):
    derived = docs10["findings"]["derived"]
    real = {r["id"]: r for r in bundled_docs()["rules"]["rules"]}
    read = set().union(*(facts_in(r["when"], derived) for r in real.values()))
    findings = docs10["findings"]["findings"]
    for rule in docs10["rules"]["rules"][len(real) :]:
        origin = real[rule["id"].split("~")[0]]
        assert facts_in(rule["when"], derived) <= read, rule["id"]
        written, *extras = rule["when"]["all"]
        assert written == origin["when"]
        assert rule["then"] == origin["then"] and rule["citations"] == origin["citations"]
        assert len(extras) == 2
        own = facts_in(origin["when"], derived)
        assert {e["fact"] for e in extras}.isdisjoint(own)
        assert extras[0]["fact"] != extras[1]["fact"]
        for extra in extras:  # an abnormal value, so the copy is never always true
            f = findings[extra["fact"]]
            value = extra.get("is", extra.get("has"))
            if f["kind"] == "tri":
                assert value == "present"
            elif f["kind"] == "int":
                assert extra["at_least"] > f["min"]
            else:
                assert value not in set(f.get("normal", ())) | set(f.get("unknown", ()))


def test_the_engine_answers_the_whole_mix_with_ten_times_the_rules(mix):
    kb = synthetic_knowledge(10)
    real = load_knowledge()
    for body in mix:
        answer = evaluate(kb, body)
        # copies fire only when their original does, so the level cannot change
        assert answer["triage"]["level"] == evaluate(real, body)["triage"]["level"]


def test_factor_one_is_the_real_knowledge_base(mix):
    kb, real = synthetic_knowledge(1), load_knowledge()
    assert kb.sha256 == real.sha256
    assert [r.id for r in kb.rules] == [r.id for r in real.rules]
    for body in mix:
        assert evaluate(kb, body) == evaluate(real, body)


def test_scaling_report_shape(mix):
    rows = scaling(mix[:4], factors=(1, 2), repeat=1)
    assert [r["factor"] for r in rows] == [1, 2]
    assert rows[1]["rules"] == 2 * rows[0]["rules"]
    for row in rows:
        assert row["evaluations"] == 4
        for key in ("p50_us", "p99_us", "mean_us", "complete_p50_us", "partial_p50_us"):
            assert row[key] > 0
        assert row["p50_us"] <= row["p99_us"]
    assert rows[0]["ratio_p50"] == 1.0 and rows[0]["ns_per_added_rule"] is None
    assert rows[1]["ratio_p50"] > 0 and isinstance(rows[1]["ns_per_added_rule"], float)
