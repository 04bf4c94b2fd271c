"""The zen benchmark compares like with like: the generated decision table gives our level on every input.

If the table drifted from the knowledge base (a rule, a level, the unknown handling), the timing
would compare two different decisions. No timing is asserted.
"""

import pytest
from hypothesis import HealthCheck, given, settings

from bench.workload import scenario_mix
from bench.zen import KeyedDecision, compare, decision_object, decision_table, zen_level
from schemas.triage import TriageRequest
from service.engine import evaluate
from service.knowledge import load_knowledge
from tests.helpers import examples, requests_st

KB = load_knowledge()
TABLE = decision_table(KB)
DECISIONS = {"engine_key": KeyedDecision(TABLE), "decision_object": decision_object(TABLE)}


@pytest.mark.parametrize("path", sorted(DECISIONS))
def test_zen_gives_our_level_on_the_scenario_mix(path):
    decision = DECISIONS[path]
    for request in scenario_mix():
        assert zen_level(decision, KB, request) == evaluate(KB, request)["triage"]["level"], request


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests_st())
def test_zen_gives_our_level_on_generated_findings(request):
    request = TriageRequest().load(request)  # the same validated data the service evaluates
    ours = evaluate(KB, request)["triage"]["level"]
    assert zen_level(DECISIONS["engine_key"], KB, request) == ours
    assert zen_level(DECISIONS["decision_object"], KB, request) == ours


def test_table_has_one_first_hit_row_per_conjunction_and_the_baseline_last():
    content = TABLE["nodes"][1]["content"]
    assert content["hitPolicy"] == "first"
    rows = content["rules"]
    ranks = [KB.levels[KB.rules_by_id[row["rule"].strip('"')].level].rank for row in rows]
    assert ranks == sorted(ranks)  # most urgent first
    assert rows[-1]["rule"] == '"LV-BASELINE"'
    assert all(v == "" for k, v in rows[-1].items() if k not in ("_id", "level", "rule"))


def test_compare_runs_on_a_tiny_budget():
    result = compare(KB, scenario_mix()[:4], repeat=1)
    assert result["agree"] == 4
    assert result["decisions_timed"] == 4
    timings = [v for k, v in result.items() if k.endswith("_us")]
    assert len(timings) == 6 and all(t > 0 for t in timings)
    assert result["ratio_ours_full_answer_over_zen_level_only_p50"] > 0
