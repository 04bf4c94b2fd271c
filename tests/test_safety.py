"""Safety invariants over generated findings (hypothesis), plus the unknown-is-not-absent rules."""

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from schemas.triage import TriageRequest
from service.engine import evaluate
from service.engine.model import Finding
from service.knowledge import load_knowledge
from tests.scenarios import ALL_CLEAR, exam, get_path, set_path

KB = load_knowledge()
RANK = {level: lv.rank for level, lv in KB.levels.items()}  # 0 = most urgent
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _value(finding: Finding):
    if finding.kind == "set":
        return st.lists(st.sampled_from(finding.values), unique=True, max_size=len(finding.values))
    if finding.kind == "int":
        return st.integers(finding.minimum, finding.maximum)
    return st.sampled_from(finding.values)


@st.composite
def findings_st(draw):
    findings: dict = {}
    for path, finding in KB.findings.items():
        if draw(st.booleans()):
            set_path(findings, path, draw(_value(finding)))
    if get_path(findings, "findings.sensation.status") == "normal":
        set_path(findings, "findings.sensation.areas", None)  # the schema forbids areas with normal sensation
    return findings


def _valid(findings: dict) -> dict:
    return TriageRequest().load({"findings": findings})  # generated requests pass the real contract


def _rank(findings: dict) -> int:
    return RANK[evaluate(KB, _valid(findings))["triage"]["level"]]


def _is_normal(finding: Finding, value) -> bool:
    if finding.kind == "set":
        return value == []
    if finding.kind == "int":
        return value == finding.minimum
    return value in finding.normal


def _worse(finding: Finding, current):
    """Values that add an abnormal finding to what is reported now."""
    if finding.kind == "set":
        return [sorted({*(current or []), v}) for v in finding.values if v not in (current or [])]
    if finding.kind == "int":
        return [v for v in range(finding.minimum, finding.maximum + 1) if current is None or v > current]
    if current is None or current in finding.normal or current in finding.unknown:
        return list(finding.abnormal_values())
    return []


@SETTINGS
@given(findings_st(), st.sampled_from(sorted(KB.findings)), st.data())
def test_adding_an_abnormal_finding_never_lowers_the_level(findings, path, data):
    finding = KB.findings[path]
    options = _worse(finding, get_path(findings, path))
    assume(options)
    before = _rank(findings)
    changed = json.loads(json.dumps(findings))
    set_path(changed, path, data.draw(st.sampled_from(options)))
    if path == "findings.sensation.areas" and get_path(changed, "findings.sensation.status") == "normal":
        set_path(changed, "findings.sensation.status", "reduced")  # areas only exist with abnormal sensation
    assert _rank(changed) <= before


@SETTINGS
@given(findings_st(), st.data())
def test_turning_an_absent_finding_unknown_never_lowers_the_level(findings, data):
    normal = [
        p for p, f in KB.findings.items() if get_path(findings, p) is not None and _is_normal(f, get_path(findings, p))
    ]
    assume(normal)
    path = data.draw(st.sampled_from(normal))
    before = _rank(findings)
    changed = json.loads(json.dumps(findings))
    set_path(changed, path, None)
    assert _rank(changed) <= before


@SETTINGS
@given(findings_st())
def test_same_input_same_output(findings):
    request = _valid(findings)
    assert json.dumps(evaluate(KB, request), sort_keys=True) == json.dumps(evaluate(KB, request), sort_keys=True)


@SETTINGS
@given(findings_st())
def test_provisional_means_an_unknown_could_raise_the_level(findings):
    result = evaluate(KB, _valid(findings))
    rank = RANK[result["triage"]["level"]]
    assert result["triage"]["provisional"] == bool(result["missing"])
    for item in result["missing"]:
        assert RANK[item["could_raise_to"]] < rank
        assert item["question"]
    if not result["triage"]["provisional"]:
        # nothing unknown, set abnormal on its own, may raise the level
        for path, finding in KB.findings.items():
            if get_path(findings, path) is None:
                for value in _worse(finding, None):
                    changed = json.loads(json.dumps(findings))
                    set_path(changed, path, value)
                    if (
                        path == "findings.sensation.areas"
                        and get_path(changed, "findings.sensation.status") == "normal"
                    ):
                        continue
                    assert _rank(changed) >= rank, (path, value)


def test_an_omitted_red_flag_is_asked_for_not_assumed_absent(triage):
    """000 'When to Seek Professional Guidance' p2: bladder changes must be asked about."""
    result = triage(exam({"bladder": None}))
    assert result["triage"]["level"] == "self_care"
    assert result["triage"]["provisional"] is True
    assert [m["field"] for m in result["missing"]] == ["findings.bladder"]
    assert result["missing"][0]["could_raise_to"] == "emergency"
    assert result["missing"][0]["rules"] == ["RF-CES-BLADDER"]


def test_explicit_unknown_is_the_same_as_omitted(triage):
    assert triage(exam({"bladder": "unknown"}))["missing"] == triage(exam({"bladder": None}))["missing"]
    assert triage(exam({"slr.result": "not_tested"}))["missing"] == triage(exam({"slr.result": None}))["missing"]


def test_missing_questions_are_computed_from_the_rules_waiting_on_them(triage):
    """A failed raise with onset unknown: the sudden-onset rules (000 p1, 001 p1, p6) are waiting."""
    result = triage(exam({"slr.result": "weak", "history.onset": None, "history.trauma": "present"}))
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
    result = triage(ALL_CLEAR)
    assert result["triage"] == {**result["triage"], "level": "self_care", "provisional": False}


SET_PATHS = sorted(p for p, f in KB.findings.items() if f.kind == "set")


@SETTINGS
@given(findings_st(), st.sampled_from(SET_PATHS), st.data())
def test_a_set_known_only_in_part_never_lowers_the_level(findings, path, data):
    """FHIR reports set members one by one; members not reported are unknown, never absent."""
    complete = get_path(findings, path)
    assume(isinstance(complete, list))
    values = KB.findings[path].values
    absent = [v for v in values if v not in complete]
    still_known = data.draw(st.lists(st.sampled_from(absent), unique=True)) if absent else []
    before = _rank(findings)
    partial = json.loads(json.dumps(_valid(findings)))
    set_path(partial["findings"], path, {"present": sorted(complete), "absent": sorted(still_known)})
    assert RANK[evaluate(KB, partial)["triage"]["level"]] <= before


@SETTINGS
@given(findings_st(), st.sampled_from(SET_PATHS), st.data())
def test_a_member_reported_present_never_lowers_the_level(findings, path, data):
    values = KB.findings[path].values
    present = data.draw(st.lists(st.sampled_from(values), unique=True))
    absent = data.draw(st.lists(st.sampled_from([v for v in values if v not in present] or [None]), unique=True))
    absent = [v for v in absent if v is not None]
    more = data.draw(st.sampled_from(values))
    request = json.loads(json.dumps(_valid(findings)))
    if get_path(request["findings"], "findings.sensation.status") == "normal" and path.endswith("areas"):
        set_path(request["findings"], "findings.sensation.status", "reduced")
    set_path(request["findings"], path, {"present": present, "absent": absent})
    before = RANK[evaluate(KB, request)["triage"]["level"]]
    set_path(
        request["findings"], path, {"present": sorted({*present, more}), "absent": [a for a in absent if a != more]}
    )
    assert RANK[evaluate(KB, request)["triage"]["level"]] <= before


@SETTINGS
@given(findings_st(), st.sampled_from(SET_PATHS), st.data())
def test_an_unreported_member_that_could_raise_the_level_is_asked_for(findings, path, data):
    values = KB.findings[path].values
    present = data.draw(st.lists(st.sampled_from(values), unique=True))
    rest = [v for v in values if v not in present]
    absent = data.draw(st.lists(st.sampled_from(rest), unique=True)) if rest else []
    unknown = [v for v in rest if v not in absent]
    request = json.loads(json.dumps(_valid(findings)))
    if path.endswith("areas"):
        set_path(request["findings"], "findings.sensation.status", "reduced")
    set_path(request["findings"], path, {"present": present, "absent": absent})
    result = evaluate(KB, request)
    for member in unknown:
        completed = json.loads(json.dumps(request))
        set_path(completed["findings"], path, [*present, member])
        if RANK[evaluate(KB, completed)["triage"]["level"]] < RANK[result["triage"]["level"]]:
            assert result["triage"]["provisional"]
            assert path in {m["field"] for m in result["missing"]}
