"""The JSON Schema acceptor takes exactly what marshmallow accepts unchanged (service/validation.py).

Generated bodies, valid and broken in every way a client can break them (wrong types, unknown keys,
out-of-range numbers, repeated members, contradictions between fields), go to both: the validator
built from the app's own OpenAPI components, and marshmallow's load. Whatever the validator accepts,
marshmallow accepts and returns unchanged; whatever marshmallow accepts, the validator accepts, so
valid calls never pay for marshmallow.
"""

import contextlib
import copy
from pathlib import Path

import flask
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from bench.workload import scenario_mix
from schemas.triage import TriageRequest, TriageResponse
from service.engine import evaluate
from service.knowledge import load_knowledge
from service.validation import ACCEPTORS, UNCHANGED_BY_LOAD, build_acceptors
from tests.helpers import examples, requests_st
from tests.scenarios import get_path, set_path

OPENAPI = Path(__file__).resolve().parents[1] / "openapi.yaml"  # the committed document, the app's own (test_openapi)

CHECK = build_acceptors(yaml.safe_load(OPENAPI.read_text(encoding="utf-8")))["TriageRequest"]
ODD_VALUES = st.sampled_from(
    [None, True, False, 0, -1, 131, 11, 2.0, 3.5, "", "x" * 65, "present", "weak", "left", [], ["low_back"],
     ["low_back", "low_back"], {}, {"result": "weak"}, "unknown", "normal", 7]
)  # fmt: skip


# every field of the request, a few misspellings and a few misplaced keys
PATHS = [
    *(f"findings.{p.removeprefix('findings.')}" for p in load_knowledge().findings),
    "patient.age", "patient.sex", "patient", "findings.slr", "findings.pain", "findings.sensation",
    "findings.bladdr", "findings.slr.reslt", "findings.x", "x", "patient.x", "findings.pain.locations",
]  # fmt: skip


def _marshmallow(body):
    try:
        return True, TriageRequest().load(body)
    except ValidationError:
        return False, None


@st.composite
def bodies(draw):
    body = draw(requests_st())
    if draw(st.booleans()):
        body["patient"] = {"age": draw(st.integers(-5, 140)), "sex": draw(st.sampled_from(["female", "male", "x"]))}
    for _ in range(draw(st.integers(0, 3))):
        # A copy: sampled_from hands out the same dict and list objects, and a later set_path through
        # one would change it for every example after (once into a cycle).
        path, value = draw(st.sampled_from(PATHS)), copy.deepcopy(draw(ODD_VALUES))
        with contextlib.suppress(TypeError, AttributeError):  # an earlier change made a parent a non-object
            set_path(body, path, value)
    return body


@settings(max_examples=examples(1500), deadline=None)
@given(bodies())
def test_what_the_validator_accepts_marshmallow_accepts_unchanged(body):
    original = copy.deepcopy(body)
    ok, loaded = _marshmallow(copy.deepcopy(body))
    if CHECK(body):
        assert ok, body
        assert loaded == original
    if ok:
        assert CHECK(body), body  # valid bodies never go to marshmallow
    assert body == original  # neither changes the body it was given


def test_areas_with_normal_sensation_are_refused_by_both():
    body = {"findings": {"sensation": {"status": "normal", "areas": ["groin"]}}}
    assert not CHECK(body)
    assert not _marshmallow(body)[0]


@pytest.mark.parametrize(
    "locations",
    [["low_back", "low_back"], ["low_back", "nowhere"], ["low_back"] * 7, "low_back", [["low_back"]], [None]],
)
def test_lists_are_checked_like_marshmallow_checks_them(locations):
    body = {"findings": {"pain": {"locations": locations}}}
    assert not CHECK(body) and not _marshmallow(body)[0]


@pytest.mark.parametrize("severity", [True, 5.0, 10.5, -1, 11])
def test_booleans_and_floats_are_not_integers(severity):
    # Draft 4: a later draft would take 5.0 as an integer, which marshmallow's strict Integer refuses.
    body = {"findings": {"pain": {"severity": severity}}}
    assert not CHECK(body) and not _marshmallow(body)[0]


@pytest.mark.parametrize("value", [[], {}, ["male"], {"male": 1}, 1, True, None, 2.5])
def test_a_choice_refuses_every_other_json_value(value):
    for body in ({"patient": {"sex": value}, "findings": {}}, {"findings": {"pain": {"locations": [value]}}}):
        assert not CHECK(body) and not _marshmallow(body)[0]


def test_the_app_builds_its_acceptors_from_its_own_published_document(app: flask.Flask):
    assert sorted(app.extensions[ACCEPTORS]) == sorted(UNCHANGED_BY_LOAD)
    body = {"findings": {"bladder": "retention"}}
    assert app.extensions[ACCEPTORS]["TriageRequest"](body)
    assert not app.extensions[ACCEPTORS]["TriageRequest"]({"findings": {"bladdr": "retention"}})


def test_the_answer_is_already_what_the_response_schema_would_send():
    """The route encodes the engine's answer as is (service/routes/triage.py): dumping it through
    TriageResponse, as flask-smorest would, changes nothing."""
    kb = load_knowledge()
    for request in scenario_mix():
        answer = evaluate(kb, request)
        assert TriageResponse().dump(answer) == answer
        assert get_path(answer, "triage.level")
