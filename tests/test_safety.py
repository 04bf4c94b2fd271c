"""Safety invariants over generated requests (hypothesis), plus the unknown-is-not-absent rules."""

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from service.engine import evaluate
from service.engine.model import Finding
from service.knowledge import load_knowledge
from tests.helpers import AREAS, SET_PATHS, STATUS, examples, partial_sets_st, requests_st, valid
from tests.scenarios import ADULT, ALL_CLEAR, exam, fetch, put

KB = load_knowledge()
RANK = {level: lv.rank for level, lv in KB.levels.items()}  # 0 = most urgent
SETTINGS = settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Findings that can be abnormal (age is an attribute: no value of it is normal or abnormal).
GRADED = sorted(p for p, f in KB.findings.items() if not f.attribute)
RED_FLAGS = sorted((p, v) for p, f in KB.findings.items() for v in f.red_flags)


def _rank(request: dict) -> int:
    return RANK[evaluate(KB, valid(request))["triage"]["level"]]


def _copy(request: dict) -> dict:
    return json.loads(json.dumps(request))


def _with(request: dict, path: str, value) -> dict:
    changed = _copy(request)
    put(changed, path, value)
    if path == AREAS and value and fetch(changed, STATUS) == "normal":
        put(changed, STATUS, "reduced")  # areas only exist with abnormal sensation
    return changed


def _is_normal(finding: Finding, value) -> bool:
    if finding.kind == "set":
        return value == []
    if finding.kind == "int":
        return value == finding.minimum
    return value in finding.normal


def _worse(finding: Finding, current):
    """Values that add an abnormal finding to what is reported now."""
    if finding.attribute:
        return []
    if finding.kind == "set":
        return [sorted({*(current or []), v}) for v in finding.values if v not in (current or [])]
    if finding.kind == "int":
        return [v for v in range(finding.minimum, finding.maximum + 1) if current is None or v > current]
    if current is None or current in finding.normal or current in finding.unknown:
        return list(finding.abnormal_values())
    return []


@SETTINGS
@given(requests_st(), st.sampled_from(GRADED), st.data())
def test_adding_an_abnormal_finding_never_lowers_the_level(request, path, data):
    options = _worse(KB.findings[path], fetch(request, path))
    assume(options)
    changed = _with(request, path, data.draw(st.sampled_from(options)))
    assert _rank(changed) <= _rank(request)


@SETTINGS
@given(requests_st(), st.sampled_from(RED_FLAGS))
def test_adding_any_red_flag_never_gives_self_care(request, flag):
    """Policy SP-6: a red flag stands on its own, whatever else is recorded (or not)."""
    path, value = flag
    finding = KB.findings[path]
    current = fetch(request, path)
    if finding.kind == "set":
        value = sorted({*(current or []), value})
    assert evaluate(KB, valid(_with(request, path, value)))["triage"]["level"] != "self_care", flag


@SETTINGS
@given(requests_st(), st.data())
def test_turning_an_absent_finding_unknown_never_lowers_the_level(request, data):
    normal = [p for p in GRADED if fetch(request, p) is not None and _is_normal(KB.findings[p], fetch(request, p))]
    assume(normal)
    path = data.draw(st.sampled_from(normal))
    assert _rank(_with(request, path, None)) <= _rank(request)


@SETTINGS
@given(requests_st())
def test_same_input_same_output(request):
    request = valid(request)
    assert json.dumps(evaluate(KB, request), sort_keys=True) == json.dumps(evaluate(KB, request), sort_keys=True)


@SETTINGS
@given(requests_st())
def test_provisional_means_an_unknown_could_raise_the_level(request):
    result = evaluate(KB, valid(request))
    rank = RANK[result["triage"]["level"]]
    assert result["triage"]["provisional"] == bool(result["missing"])
    for item in result["missing"]:
        assert RANK[item["could_raise_to"]] < rank
        assert item["question"]
    if not result["triage"]["provisional"]:
        # nothing unknown, set abnormal on its own (or any age), may raise the level
        for path, finding in KB.findings.items():
            if fetch(request, path) is not None:
                continue
            values = range(finding.minimum, finding.maximum + 1) if finding.attribute else _worse(finding, None)
            for value in values:
                assert _rank(_with(request, path, value)) >= rank, (path, value)


def test_an_omitted_red_flag_is_asked_for_not_assumed_absent(triage):
    """000 'When to Seek Professional Guidance' p2: bladder changes must be asked about; policy SP-3 p3:
    self-care waits for the cauda equina screen, so an unknown bladder holds the level at routine."""
    result = triage(exam({"bladder": None}), ADULT)
    assert result["triage"]["level"] == "routine"
    assert result["triage"]["rules"] == ["LV-CES-SCREEN-NOT-DONE"]
    assert result["triage"]["provisional"] is True
    assert [m["field"] for m in result["missing"]] == ["findings.bladder"]
    assert result["missing"][0]["could_raise_to"] == "emergency"
    assert result["missing"][0]["rules"] == ["RF-CES-BLADDER"]


def test_explicit_unknown_is_the_same_as_omitted(triage):
    assert triage(exam({"bladder": "unknown"}))["missing"] == triage(exam({"bladder": None}))["missing"]
    assert triage(exam({"slr.result": "not_tested"}))["missing"] == triage(exam({"slr.result": None}))["missing"]


def test_missing_questions_are_computed_from_the_rules_waiting_on_them(triage):
    """A failed raise with onset unknown: the sudden-onset rules (000 p1, 001 p1, p6) are waiting."""
    result = triage(exam({"slr.result": "weak", "history.onset": None, "history.trauma": "present"}), ADULT)
    missing = {m["field"]: m for m in result["missing"]}
    assert set(missing) == {"findings.history.onset"}
    assert missing["findings.history.onset"]["could_raise_to"] == "emergency"  # RF-TRAUMA
    assert set(missing["findings.history.onset"]["rules"]) >= {"RF-TRAUMA"}


def test_reduced_sensation_without_areas_asks_where(triage):
    """Numbness in the saddle area counts wherever reported, so an unplaced numbness must be placed."""
    for areas in (None, []):
        result = triage(exam({"sensation": {"status": "reduced", **({"areas": areas} if areas is not None else {})}}))
        fields = {m["field"]: m["could_raise_to"] for m in result["missing"]}
        assert fields.get("findings.sensation.areas") == "emergency"


def test_an_empty_request_asks_for_every_red_flag(triage):
    result = triage({})
    fields = {m["field"] for m in result["missing"] if m["could_raise_to"] == "emergency"}
    assert {"findings.bladder", "findings.bowel", "findings.saddle_numbness", "findings.slr.result"} <= fields
    assert result["triage"]["provisional"] is True
    # red-flag questions come first
    assert result["missing"][0]["could_raise_to"] == "emergency"


def test_complete_normal_exam_is_final(triage):
    result = triage(ALL_CLEAR, ADULT)
    assert result["triage"] == {**result["triage"], "level": "self_care", "provisional": False, "incomplete": False}


@SETTINGS
@given(requests_st(), st.sampled_from(SET_PATHS), st.data())
def test_a_set_known_only_in_part_never_lowers_the_level(request, path, data):
    """FHIR reports set members one by one; members not reported are unknown, never absent."""
    complete = fetch(request, path)
    assume(isinstance(complete, list))
    values = KB.findings[path].values
    absent = [v for v in values if v not in complete]
    still_known = data.draw(st.lists(st.sampled_from(absent), unique=True)) if absent else []
    before = _rank(request)
    partial = _copy(valid(request))
    put(partial, path, {"present": sorted(complete), "absent": sorted(still_known)})
    assert RANK[evaluate(KB, partial)["triage"]["level"]] <= before


@SETTINGS
@given(partial_sets_st(), st.data())
def test_a_member_reported_present_never_lowers_the_level(partial, data):
    request, path, present, absent = partial
    more = data.draw(st.sampled_from(KB.findings[path].values))
    before = RANK[evaluate(KB, request)["triage"]["level"]]
    put(request, path, {"present": sorted({*present, more}), "absent": [a for a in absent if a != more]})
    assert RANK[evaluate(KB, request)["triage"]["level"]] <= before


@SETTINGS
@given(partial_sets_st())
def test_an_unreported_member_that_could_raise_the_level_is_asked_for(partial):
    request, path, present, absent = partial
    unknown = [v for v in KB.findings[path].values if v not in present and v not in absent]
    result = evaluate(KB, request)
    for member in unknown:
        completed = _copy(request)
        put(completed, path, [*present, member])
        if RANK[evaluate(KB, completed)["triage"]["level"]] < RANK[result["triage"]["level"]]:
            assert result["triage"]["provisional"]
            assert path in {m["field"] for m in result["missing"]}
