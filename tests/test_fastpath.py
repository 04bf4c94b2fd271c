"""The validation fast path accepts nothing marshmallow would refuse or change (schemas/fastpath.py).

Generated bodies, valid and broken in every way a client can break them (wrong types, unknown keys,
out-of-range numbers, repeated members, contradictions between fields), go to both. Whatever the
compiled checks accept, marshmallow accepts too, and returns unchanged. Whatever marshmallow
accepts, the fast path takes, so valid calls never pay for marshmallow.
"""

import contextlib
import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields, validate

from bench.workload import scenario_mix
from schemas.base import StrictSchema
from schemas.fastpath import FastLoadSchema, NoFastPath, compile_schema
from schemas.triage import TriageRequest, TriageResponse
from service.engine import evaluate
from service.knowledge import load_knowledge
from service.routes.triage import TRIAGE_REQUEST_SCHEMA
from tests.scenarios import get_path, set_path
from tests.test_safety import requests_st

CHECK = compile_schema(TriageRequest())
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
        return True, Schema.load(TriageRequest(), body)  # the slow path, bypassing the fast one
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


@settings(max_examples=1500, deadline=None)
@given(bodies())
def test_what_the_fast_path_accepts_marshmallow_accepts_unchanged(body):
    original = copy.deepcopy(body)
    ok, loaded = _marshmallow(copy.deepcopy(body))
    if CHECK(body):
        assert ok, body
        assert loaded == original
    if ok:
        assert CHECK(body), body  # valid bodies never fall back to the slow path
    assert body == original  # neither path changes the body it was given


def test_a_refused_body_gets_marshmallows_own_errors():
    body = {"findings": {"bladdr": "retention", "slr": {"result": "weak", "side": "up"}}}
    with pytest.raises(ValidationError) as fast:
        TriageRequest().load(copy.deepcopy(body))
    with pytest.raises(ValidationError) as slow:
        Schema.load(TriageRequest(), body)
    assert fast.value.messages == slow.value.messages


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


def test_booleans_and_floats_are_not_integers():
    for severity in (True, 5.0):
        body = {"findings": {"pain": {"severity": severity}}}
        assert not CHECK(body) and not _marshmallow(body)[0]


@pytest.mark.parametrize("value", [[], {}, ["male"], {"male": 1}, 1, True, None, 2.5, b"male"])
def test_a_choice_refuses_every_other_json_value(value):
    # The fast path tests a choice by set membership alone: unhashable values and values of other
    # types must fail it, as marshmallow's String with OneOf refuses them (or, for bytes, decodes them).
    for body in ({"patient": {"sex": value}, "findings": {}}, {"findings": {"pain": {"locations": [value]}}}):
        accepted, loaded = _marshmallow(body)
        assert not CHECK(body) and (not accepted or loaded != body)


def test_a_string_field_with_other_choices_keeps_its_type_test():
    class Coded(StrictSchema):
        code = fields.String(validate=validate.OneOf([1, 2]))

    assert not compile_schema(Coded())({"code": 1})  # marshmallow's String refuses the int 1


def test_a_schema_the_compiler_does_not_understand_stops_it():
    class Lenient(StrictSchema):
        when = fields.DateTime()

    class Defaults(StrictSchema):
        age = fields.Integer(load_default=0)

    class Renamed(StrictSchema):
        age = fields.String(data_key="Age")

    for schema in (Lenient, Defaults, Renamed):
        with pytest.raises(NoFastPath):
            compile_schema(schema())


def test_the_fast_path_is_compiled_at_import():
    assert isinstance(TriageRequest(), FastLoadSchema)
    assert TriageRequest._fast_check is not None
    assert TRIAGE_REQUEST_SCHEMA._fast_load is TriageRequest._fast_check  # the routes' own instance
    assert TriageRequest(only=("findings",))._fast_load is None  # compiled for the whole schema only


def test_the_answer_is_already_what_the_response_schema_would_send():
    """The route encodes the engine's answer as is (service/encoding.py): dumping it through
    TriageResponse, as flask-smorest would, changes nothing."""
    kb = load_knowledge()
    for request in scenario_mix():
        answer = evaluate(kb, request)
        assert TriageResponse().dump(answer) == answer
        assert get_path(answer, "triage.level")
