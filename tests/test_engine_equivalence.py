"""The indexed engine gives exactly the answers of the original one-pass engine.

tests/reference_engine.py is the engine as first written and reviewed: every rule checked on every
call. The indexed engine (service/engine/plan.py) must agree with it byte for byte. That covers the
scenario mix, generated requests (partial sets from FHIR included), and knowledge bases 10 and 100
times larger. The rest of this file covers what the speed-up added: the generated request reader reads what
build_facts reads, shared parts are read-only, and reusing the decision drawn from a set of verdicts
gives the answer a fresh evaluation would, with each patient's own values in the trace.
"""

import copy
import json

import orjson
import pytest
from hypothesis import given, settings

from bench.engine import synthetic_knowledge
from bench.workload import scenario_mix
from service.engine import evaluate, triage
from service.engine import plan as plan_module
from service.engine.facts import build_facts
from service.engine.plan import plan_for
from service.knowledge import load_knowledge
from tests.helpers import examples, partial_sets_st, requests_st, valid
from tests.reference_engine import evaluate as reference
from tests.scenarios import exam

KB = load_knowledge()
KB10 = synthetic_knowledge(10)
GENERATED = settings(max_examples=examples(400), deadline=None)


def assert_reference_answer(kb, request):
    """The answer is the reference engine's, keys in the same order."""
    expected = reference(kb, request)
    answer = evaluate(kb, request)
    assert orjson.dumps(answer) == orjson.dumps(expected)
    return answer


@pytest.mark.parametrize("factor", [1, 10, 100])
def test_every_scenario_gets_the_reference_answer(factor):
    kb = KB if factor == 1 else KB10 if factor == 10 else synthetic_knowledge(100)
    for request in scenario_mix():
        assert_reference_answer(kb, request)


@GENERATED
@given(requests_st())
def test_generated_requests_get_the_reference_answer(request):
    request = valid(request)
    for kb in (KB, KB10):
        assert_reference_answer(kb, request)


@GENERATED
@given(partial_sets_st())
def test_sets_known_in_part_get_the_reference_answer(partial):
    assert_reference_answer(KB, partial[0])


@GENERATED
@given(requests_st())
def test_the_generated_reader_reads_the_facts_build_facts_gives(request):
    request = valid(request)
    assert plan_for(KB).read(request).facts == build_facts(request, KB.findings)


def test_the_reader_refuses_what_validation_would_refuse():
    """A value of the wrong shape is an internal error, never read as some other value."""
    read = plan_for(KB).read
    with pytest.raises(TypeError):
        read({"findings": exam({"bladder": ["retention"]})})
    with pytest.raises(AttributeError):
        read({"findings": {**exam(), "hip": ["range_reduced"]}})


def test_remembered_decisions_equal_fresh_ones():
    mix = scenario_mix()
    plan = plan_for(KB)
    plan.decisions.clear()
    fresh = [evaluate(KB, r) for r in mix]
    assert plan.decisions  # the table was filled, so the comparison below means something
    assert [evaluate(KB, r) for r in mix] == fresh == [reference(KB, r) for r in mix]


def test_the_same_verdicts_with_other_values_keep_their_own_trace():
    """CA-IMPINGEMENT-PAINFUL-FLEXION fires on front-of-hip or groin pain (rules.yaml): two patients
    share its decision, and each trace shows that patient's own pain locations."""
    front = {"findings": exam({"hip.range_reduced": "present", "pain.locations": ["front_of_hip"]})}
    groin = {"findings": exam({"hip.range_reduced": "present", "pain.locations": ["groin"]})}
    plan = plan_for(KB)
    plan.decisions.clear()
    answers = [evaluate(KB, front), evaluate(KB, groin), evaluate(KB, front)]
    assert len(plan.decisions) == 1
    assert answers == [reference(KB, front), reference(KB, groin), reference(KB, front)]
    shown = [_trace_value(a, "CA-IMPINGEMENT-PAINFUL-FLEXION", "findings.pain.locations") for a in answers]
    assert shown == [["front_of_hip"], ["groin"], ["front_of_hip"]]


def test_remembered_tables_stay_bounded(monkeypatch):
    monkeypatch.setattr(triage, "DECISIONS_KEPT", 3)
    monkeypatch.setattr(triage, "TRACES_KEPT", 2)
    plan = plan_for(KB)
    plan.decisions.clear()
    mix = scenario_mix()
    assert [evaluate(KB, r) for r in mix] == [reference(KB, r) for r in mix]
    assert 0 < len(plan.decisions) <= 3
    assert all(len(d.traces) <= 2 for d in plan.decisions.values())
    sudden_severe = {"slr.result": "unable", "history.onset": "sudden", "pain.locations": ["low_back"]}
    plan.decisions.clear()
    for severity in range(7, 11):  # RF-SUDDEN-SEVERE-BACK-PAIN every time, a new value in its trace
        request = {"findings": exam({**sudden_severe, "pain.severity": severity})}
        assert evaluate(KB, request) == reference(KB, request)
    assert len(plan.decisions) == 1
    assert [len(d.traces) for d in plan.decisions.values()] == [2]


def test_truth_tables_give_fresh_verdicts_and_stay_bounded(monkeypatch):
    monkeypatch.setattr(plan_module, "VERDICTS_KEPT", 2)
    plan = plan_module.compile_plan(KB)  # its own, fresh tables
    mix = scenario_mix()
    for request in mix + mix:
        seen = plan.read(request)
        for rp in plan.rules:
            fresh = rp.rule.when.check(seen.facts)
            assert rp.check(seen.facts) == (fresh.truth, fresh.matched, fresh.open, fresh.alone)
    tables = [rp.check.table for rp in plan.rules if hasattr(rp.check, "table")]
    assert tables and all(0 < len(t) <= 2 for t in tables)


def _trace_value(answer, rule, field):
    entry = next(t for t in answer["trace"] if t["rule"] == rule)
    return next(m["value"] for m in entry["matched"] if m["field"] == field)


def test_shared_parts_of_an_answer_refuse_changes():
    """A caller changing a shared part in place would change it for every later patient."""
    answer = evaluate(KB, scenario_mix()[0])
    shared = [
        answer["triage"]["citations"],
        answer["triage"]["citations"][0],
        answer["causes"],
        answer["causes"][0],
        answer["referrals"][0]["citations"],
    ]
    for part in shared:
        with pytest.raises(TypeError, match="shared"):
            part.clear()
    with pytest.raises(TypeError):
        answer["causes"][0]["score"] = 0
    with pytest.raises(TypeError):
        answer["causes"].append({})
    with pytest.raises(TypeError):
        answer["trace"] = []  # the answer itself is read-only too
    assert evaluate(KB, scenario_mix()[0]) == answer


def test_a_copy_of_an_answer_can_be_changed():
    answer = copy.deepcopy(evaluate(KB, scenario_mix()[0]))
    answer["causes"][0]["score"] = -1
    answer["triage"]["citations"].clear()
    assert evaluate(KB, scenario_mix()[0])["causes"][0]["score"] != -1
    assert json.loads(json.dumps(evaluate(KB, scenario_mix()[0]))) == evaluate(KB, scenario_mix()[0])
