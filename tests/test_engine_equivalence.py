"""The indexed engine gives exactly the answers of the original one-pass engine.

tests/reference_engine.py is the engine as first written and reviewed: every rule checked on every
call. The indexed engine (service/engine/plan.py) must agree with it byte for byte. That covers the
scenario mix, generated requests (partial sets from FHIR included), and knowledge bases 10 and 100
times larger. The rest of this file covers what the speed-up added: shared parts are read-only,
and reusing the conclusions of a set of fired rules gives the answer a fresh evaluation would.
"""

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.engine import synthetic_knowledge
from bench.workload import scenario_mix
from service.engine import evaluate
from service.engine.plan import plan_for
from service.knowledge import load_knowledge
from tests.reference_engine import evaluate as reference
from tests.scenarios import get_path, set_path
from tests.test_safety import SET_PATHS, _valid, findings_st

KB = load_knowledge()
KB10 = synthetic_knowledge(10)
GENERATED = settings(max_examples=400, deadline=None)


@pytest.mark.parametrize("factor", [1, 10, 100])
def test_every_scenario_gets_the_reference_answer(factor):
    kb = KB if factor == 1 else KB10 if factor == 10 else synthetic_knowledge(100)
    for request in scenario_mix():
        assert evaluate(kb, request) == reference(kb, request)


@GENERATED
@given(findings_st())
def test_generated_requests_get_the_reference_answer(findings):
    request = _valid(findings)
    assert evaluate(KB, request) == reference(KB, request)
    assert evaluate(KB10, request) == reference(KB10, request)


@GENERATED
@given(findings_st(), st.sampled_from(SET_PATHS), st.data())
def test_sets_known_in_part_get_the_reference_answer(findings, path, data):
    values = KB.findings[path].values
    present = data.draw(st.lists(st.sampled_from(values), unique=True))
    rest = [v for v in values if v not in present]
    absent = data.draw(st.lists(st.sampled_from(rest), unique=True)) if rest else []
    request = json.loads(json.dumps(_valid(findings)))
    if path.endswith("areas") and get_path(request["findings"], "findings.sensation.status") == "normal":
        set_path(request["findings"], "findings.sensation.status", "reduced")
    set_path(request["findings"], path, {"present": present, "absent": absent})
    assert evaluate(KB, request) == reference(KB, request)


def test_remembered_conclusions_equal_fresh_ones():
    mix = scenario_mix()
    warm = [evaluate(KB, r) for r in mix]
    plan_for(KB).conclusions.clear()
    assert [evaluate(KB, r) for r in mix] == warm
    assert plan_for(KB).conclusions  # the table was used, so the comparison above means something


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
    assert evaluate(KB, scenario_mix()[0]) == answer


def test_a_copy_of_an_answer_can_be_changed():
    answer = copy.deepcopy(evaluate(KB, scenario_mix()[0]))
    answer["causes"][0]["score"] = -1
    answer["triage"]["citations"].clear()
    assert evaluate(KB, scenario_mix()[0])["causes"][0]["score"] != -1
    assert json.loads(json.dumps(evaluate(KB, scenario_mix()[0]))) == evaluate(KB, scenario_mix()[0])
