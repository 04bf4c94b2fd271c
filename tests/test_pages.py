"""The clinician pages: /knowledge and /knowledge/rules/{id}, server-rendered HTML a CDS card links to.

With the source texts configured, every cited passage of every rule is marked inside its section, and the
marked words are exactly the span whose SHA-256 the citation records; without them, a published source's
passage is replaced by "Text not available" and the locator. The pages open without a credential unless
PAGES_OPEN is off. test_pages_browser.py follows a card's link in Chromium.
"""

from __future__ import annotations

import hashlib
import html
import re

import pytest

from service import create_app
from service.knowledge.plain_words import condition_words
from tests.fhir_cases import SERVICE_URL, call_for

MARKED = re.compile(r"<mark>(.*?)</mark>", re.S)
CLOSED_API = {"TESTING": True, "CDS_AUTH_DISABLED": True}  # no API credential of any kind is configured


@pytest.fixture(scope="module")
def with_texts(seeds_dir):
    return create_app({**CLOSED_API, "SOURCE_TEXTS_DIR": str(seeds_dir)}).test_client()


@pytest.fixture(scope="module")
def without_texts():
    return create_app(CLOSED_API).test_client()


def marked(page: bytes) -> list[str]:
    return [html.unescape(m) for m in MARKED.findall(page.decode("utf-8"))]


def test_every_rule_page_marks_each_cited_passage_as_its_citation_hashes_it(with_texts, kb):
    for rule in kb.rules:
        response = with_texts.get(f"/knowledge/rules/{rule.id}")
        assert response.status_code == 200 and response.mimetype == "text/html", rule.id
        passages = marked(response.data)
        assert len(passages) == len(rule.citations), rule.id
        for passage, cit in zip(passages, rule.citations, strict=True):
            assert hashlib.sha256(passage.encode("utf-8")).hexdigest() == cit.sha256, (rule.id, cit.id)
        text = html.unescape(response.data.decode("utf-8"))
        assert rule.statement in text
        for cit in rule.citations:
            source = next(s for s in kb.sources if s["id"] == cit.source)
            assert source["title"] in text and kb.authorities[source["authority"]] in text


def test_without_the_texts_a_published_passage_is_not_shown_and_the_page_says_so(without_texts, kb):
    rule = kb.rules_by_id["RF-CES-BLADDER"]  # cites texts 000 and 001 and the service's policy
    page = html.unescape(without_texts.get(f"/knowledge/rules/{rule.id}").data.decode("utf-8"))
    published = [c for c in rule.citations if c.source != "SP"]
    assert published and page.count("Text not available: the source texts are not configured") == len(published)
    assert len(marked(page.encode())) == len(rule.citations) - len(published)  # the policy is this repository's
    for cit in published:
        assert f"characters {cit.start} to {cit.end}" in page and cit.sha256 in page


def test_the_condition_reads_in_plain_words():
    derived = {"aged_65_or_over": {"fact": "patient.age", "at_least": 65}}
    spec = {
        "all": [
            {"ref": "aged_65_or_over"},
            {"fact": "findings.slr.result", "in": ["weak", "unable", "pain_limited"]},
            {
                "at_least": 2,
                "of": [
                    {"fact": "findings.history.trauma", "is": "present"},
                    {"fact": "findings.pain.severity", "below": 4},
                ],
            },
            {"fact": "findings.pain.locations", "empty": True},
        ]
    }
    phrase = condition_words(spec, derived)
    assert phrase.text == "all of:"
    older, raise_, two, place = phrase.parts
    assert (older.text, older.parts[0].text) == ("aged 65 or over, that is", "age is 65 or more")
    assert raise_.text == "straight leg raise result is weak, unable or pain limited"
    assert two.text == "at least 2 of:" and [p.text for p in two.parts] == [
        "trauma is present",
        "pain severity is under 4",
    ]
    assert place.text == "no pain locations are listed"


def test_a_rule_for_every_answer_says_so():
    """LV-BASELINE's condition is an empty `all`: the page says it always applies, not an empty "all of:"."""
    phrase = condition_words({"all": []}, {})
    assert phrase.text.startswith("always") and not phrase.parts


def test_every_rule_condition_has_words(kb):
    for rule in kb.rules:
        assert condition_words(rule.when_source, kb.derived).text, rule.id  # raises on an operator without words


def test_the_index_lists_every_rule_with_a_link_and_every_source_with_its_authority(without_texts, kb):
    response = without_texts.get("/knowledge")
    assert response.status_code == 200
    page = html.unescape(response.data.decode("utf-8"))
    for rule in kb.rules:
        assert f'href="/knowledge/rules/{rule.id}"' in page
    for source in kb.sources:
        assert source["title"] in page
    assert kb.version in page


def test_the_pages_carry_a_csp_that_allows_only_their_own_stylesheet(without_texts):
    for path in ("/knowledge", "/knowledge/rules/RF-OLDER-FALL", "/knowledge/pages.css"):
        response = without_texts.get(path)
        assert response.status_code == 200, path
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "style-src 'self'" in policy and "script" not in policy
    page = without_texts.get("/knowledge/rules/RF-OLDER-FALL").data.decode("utf-8")
    assert "<script" not in page and "style=" not in page and "http" not in page  # nothing inline, nothing outside


def test_an_unknown_rule_is_a_404_page_that_does_not_echo_the_id(without_texts):
    response = without_texts.get("/knowledge/rules/RF-NO-SUCH-RULE-X")
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert b"RF-NO-SUCH-RULE-X" not in response.data and b'href="/knowledge"' in response.data


def test_a_site_can_close_the_pages():
    closed = create_app({**CLOSED_API, "PAGES_OPEN": False}).test_client()
    for path in ("/knowledge", "/knowledge/rules/RF-OLDER-FALL", "/knowledge/pages.css"):
        assert closed.get(path).status_code == 401, path


def test_every_card_link_opens_for_a_clinician_without_a_credential():
    """Friction (issue 23): card links went to /v1/rules and /v1/knowledge, and source.url to /v1/sources,
    each a 401 for a clinician's browser."""
    public = "https://cds.example.org"
    client = create_app({**CLOSED_API, "PUBLIC_BASE_URL": public}).test_client()
    call = call_for({"bladder": "retention", "slr": {"result": "weak", "side": "left"}})
    [card] = client.post(SERVICE_URL, json=call).get_json()["cards"]
    urls = [link["url"] for link in card["links"]] + [card["source"]["url"]]
    assert len(urls) >= 3 and all(url.startswith(public + "/") for url in urls)
    for url in urls:
        response = client.get(url.removeprefix(public))
        assert response.status_code == 200 and response.mimetype == "text/html", url
