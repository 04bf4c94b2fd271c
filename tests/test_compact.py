"""Compact answers (`Prefer: citations=compact`): each citation once, cited items naming it by id.

For every example case and clinical scenario (tests/golden/requests.jsonl, which holds
examples/cases.jsonl and tests/clinical_cases.py, and the OpenAPI example of schemas/examples.py) the
default answer is rebuilt from the compact one, byte for byte, the way a client would: each id replaced
by its entry in the top-level map. The compact shape is checked against openapi.yaml's schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from schemas.examples import TRIAGE_REQUEST
from service.compact import wants_compact

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
COMPACT = {"Prefer": "citations=compact"}


def cases() -> list[dict[str, Any]]:
    lines = (GOLDEN / "requests.jsonl").read_text(encoding="utf-8").splitlines()
    return [TRIAGE_REQUEST, *(json.loads(line) for line in lines)]


def expanded(item: Any, cited: dict[str, Any]) -> Any:
    if isinstance(item, dict) and isinstance(item.get("citations"), list):
        return {**item, "citations": [{"id": cid, **cited[cid]} for cid in item["citations"]]}
    return item


def rebuilt(answer: dict[str, Any], cited: dict[str, Any]) -> dict[str, Any]:
    """The default answer from a compact one, as a client builds it (independent of service/compact.py):
    each id replaced by its map entry, with the id put back first."""
    out = {}
    for key, value in answer.items():
        if key == "citations" and value is cited:
            continue
        out[key] = [expanded(v, cited) for v in value] if isinstance(value, list) else expanded(value, cited)
    return out


def named(answer: dict[str, Any]) -> set[str]:
    """The citation ids a compact answer's items name."""
    ids: set[str] = set()
    for key, value in answer.items():
        for item in value if isinstance(value, list) else [value]:
            if key != "citations" and isinstance(item, dict) and isinstance(item.get("citations"), list):
                ids.update(item["citations"])
    return ids


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))


def validator(spec: dict[str, Any], name: str) -> OAS30Validator:
    schema = {**spec["components"]["schemas"][name], "components": spec["components"]}
    return OAS30Validator(schema)


def test_every_example_case_rebuilds_its_default_answer_from_the_compact_one(client, kb, spec):
    compact_schema, default_schema = validator(spec, "TriageResponseCompact"), validator(spec, "TriageResponse")
    ratios = []
    for number, body in enumerate(cases()):
        default = client.post("/v1/triage", json=body)
        compact = client.post("/v1/triage", json=body, headers=COMPACT)
        assert default.status_code == compact.status_code == 200, number
        assert "Preference-Applied" not in default.headers
        assert compact.headers["Preference-Applied"] == "citations=compact"
        assert "Prefer" in default.headers["Vary"] and "Prefer" in compact.headers["Vary"]
        answer = orjson.loads(compact.get_data())
        cited = answer["citations"]
        assert list(answer) == [*orjson.loads(default.get_data()), "citations"]
        assert named(answer) == set(cited), number  # every entry named, every name in the map
        assert all({"id": cid, **cited[cid]} == kb.citations[cid].locator() for cid in cited)
        assert orjson.dumps(rebuilt(answer, cited)) == default.get_data(), number
        compact_schema.validate(answer)
        assert not default_schema.is_valid(answer)  # the two shapes are told apart (oneOf)
        assert not compact_schema.is_valid(default.get_json())
        ratios.append(len(compact.get_data()) / len(default.get_data()))
    assert len(ratios) > 200
    assert max(ratios) < 1  # every compact answer is smaller; see the next test for how much
    print(f"\ncompact/default bytes over {len(ratios)} cases: min {min(ratios):.3f}, max {max(ratios):.3f}")


def test_a_compact_batch_of_every_example_case_is_less_than_half_the_default(client, spec):
    """One citation map for the whole batch: each citation once however many answers name it."""
    body = {"cases": cases()}
    default = client.post("/v1/triage/batch", json=body)
    compact = client.post("/v1/triage/batch", json=body, headers=COMPACT)
    assert default.status_code == compact.status_code == 200
    assert compact.headers["Preference-Applied"] == "citations=compact"
    batch = orjson.loads(compact.get_data())
    cited = batch["citations"]
    again = {**batch, "results": [{**r, "answer": rebuilt(r["answer"], cited)} for r in batch["results"]]}
    del again["citations"]
    assert orjson.dumps(again) == default.get_data()
    assert set().union(*(named(r["answer"]) for r in batch["results"])) == set(cited)
    validator(spec, "BatchResponseCompact").validate(batch)
    ratio = len(compact.get_data()) / len(default.get_data())
    print(f"\ncompact batch of {len(body['cases'])} cases: {ratio:.3f} of the default's bytes")
    assert ratio < 0.5


def test_a_compact_batch_leaves_rejected_cases_as_they_are(client):
    body = {"cases": [{"findings": {"bladder": "retention"}}, {"findings": {"bladdr": "retention"}}]}
    default = client.post("/v1/triage/batch", json=body).get_json()
    compact = client.post("/v1/triage/batch", json=body, headers=COMPACT).get_json()
    assert compact["results"][1] == default["results"][1]
    assert all(isinstance(cid, str) for cid in compact["results"][0]["answer"]["triage"]["citations"])


@pytest.mark.parametrize(
    ("prefer", "compact"),
    [
        ("citations=compact", True),
        ('Citations="COMPACT"', True),
        ("respond-async, citations=compact; strict", True),
        ("return=minimal,citations = compact", True),
        ("citations=full", False),
        ("citations", False),
        ("return=minimal", False),
        ("compact", False),
        ("", False),
        (None, False),
    ],
)
def test_the_prefer_header_is_read_as_rfc_7240_says(prefer, compact):
    assert wants_compact(prefer) is compact


def test_another_preference_gives_the_default_shape(client):
    default = client.post("/v1/triage", json=TRIAGE_REQUEST)
    other = client.post("/v1/triage", json=TRIAGE_REQUEST, headers={"Prefer": "citations=full, return=minimal"})
    assert other.get_data() == default.get_data()
    assert "Preference-Applied" not in other.headers


def test_unknown_fields_are_still_refused_with_the_preference(client):
    response = client.post("/v1/triage", json={"findings": {"bladdr": "retention"}}, headers=COMPACT)
    assert response.status_code == 422
    assert "Preference-Applied" not in response.headers
