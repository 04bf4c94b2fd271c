"""GET /v1/citations/{id}: a citation's locator, title and heading, and its passage when the texts are at hand.

The passage comes from the source texts at run time, never from the project: these tests compare it with
the files in SEEDS_DIR and with the citation's SHA-256, and write none of it anywhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from service import create_app
from service.engine.model import LOCATOR
from service.knowledge.passages import MISMATCH, NO_POLICY, NOT_CONFIGURED, passage_view

GOLDEN = Path(__file__).resolve().parent / "golden"
ONLY_WITH_TEXT = {"passage", "passage_sha256", "paragraph_text"}


@pytest.fixture(scope="module")
def with_texts(seeds_dir):
    return create_app({"TESTING": True, "API_OPEN": True, "SOURCE_TEXTS_DIR": str(seeds_dir)}).test_client()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_with_the_texts_every_citation_shows_its_verified_passage_and_paragraph(with_texts, kb, seeds_dir):
    project = Path(__file__).resolve().parents[1]
    for cid, cit in kb.citations.items():
        response = with_texts.get(f"/v1/citations/{cid}")
        assert response.status_code == 200, cid
        body = response.get_json()
        assert {k: body[k] for k in LOCATOR} == cit.locator()
        assert body["id"] == cid and body["title"] and "heading" in body
        assert body["text_available"] is True and body["message"]
        source = next(s for s in kb.sources if s["id"] == cit.source)
        folder = project if source["held"] == "project" else seeds_dir
        text = (folder / source["file"]).read_text(encoding="utf-8")
        assert body["passage"] == text[cit.start : cit.end]
        assert body["passage_sha256"] == sha256(body["passage"]) == cit.sha256 == body["sha256"]
        first, last = body["paragraph_start"], body["paragraph_end"]
        assert first <= cit.start < cit.end <= last
        assert body["paragraph_text"] == text[first:last]
        assert body["passage"] in body["paragraph_text"]


def test_without_the_texts_the_locator_comes_with_text_not_available(client, kb):
    shown = 0
    for cid, cit in kb.citations.items():
        response = client.get(f"/v1/citations/{cid}")
        assert response.status_code == 200, cid
        body = response.get_json()
        assert {k: body[k] for k in LOCATOR} == cit.locator()
        assert body["paragraph_start"] <= cit.start < cit.end <= body["paragraph_end"]
        if cit.source == "SP":  # the service's own policy is in this repository: still shown
            assert body["text_available"] is True and body["passage_sha256"] == cit.sha256
            shown += 1
        else:
            assert body["text_available"] is False and body["message"] == NOT_CONFIGURED
            assert not ONLY_WITH_TEXT & set(body)
    assert shown >= 20


def test_a_missing_policy_or_a_changed_text_is_not_shown(kb):
    policy = next(cid for cid, c in kb.citations.items() if c.source == "SP")
    view = passage_view(kb, {}, policy)
    assert view["text_available"] is False and view["message"] == NO_POLICY
    text = next(cid for cid, c in kb.citations.items() if c.source == "000")
    view = passage_view(kb, {"000": "x" * 10_000}, text)
    assert view["text_available"] is False and view["message"] == MISMATCH
    assert not ONLY_WITH_TEXT & set(view)


def test_every_citation_in_the_golden_answers_has_a_passage_view(client, kb):
    seen: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if "sha256" in node and "paragraph" in node:
                seen.add(node["id"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for line in (GOLDEN / "answers.jsonl").read_text(encoding="utf-8").splitlines():
        walk(json.loads(line))
    assert seen and seen <= set(kb.citations)
    for cid in sorted(seen):
        assert client.get(f"/v1/citations/{cid}").get_json()["sha256"] == kb.citations[cid].sha256


@pytest.mark.parametrize("cid", ["000.seek.nothing", "x" * 65, "000.seek.ces_bladder_bowel.extra"])
def test_an_unknown_citation_is_a_404_problem(client, cid):
    response = client.get(f"/v1/citations/{cid}")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 404
    assert cid not in response.get_data(as_text=True)  # the id is never echoed
