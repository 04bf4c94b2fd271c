"""A clinician follows a CDS card's rule link in a real browser: Debian's Chromium, headless, loopback only.

A live gunicorn answers a CDS Hooks call (an older patient's fall with groin pain); the test takes the
card's link to rule RF-OLDER-FALL and opens it with no credential of any kind, as a clinician's browser
would. The page must show the rule, its condition and a highlighted passage, load nothing from anywhere
but the service, and raise no Content-Security-Policy violation. The replica runs without the published
source texts, so the passages shown are the service's own policy's (the project holds no words of the
published texts, and the committed screenshot must not either); test_pages.py checks the published
passages with the texts configured. `make screenshot` renews docs/rule-page.png (PAGES_SCREENSHOT).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.browser import TIMEOUT_MS, ensure_chromium, loopback_browser
from tests.fhir_cases import bundle, hook_call, observations_for, patient
from tests.live import Replica, running

pytestmark = pytest.mark.browser

RULE = "RF-OLDER-FALL"  # cites only the service's policy (SP): its passages are the project's own words

playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    ensure_chromium()
    overrides = {
        "WEB_CONCURRENCY": "1",
        "TRIAGE_API_OPEN": "false",  # no credential reaches the pages: they must open on their own
        "TRIAGE_CDS_AUTH_DISABLED": "true",  # the CDS call itself; its JWT checks are tested elsewhere
        "TRIAGE_SOURCE_TEXTS_DIR": "",
    }
    with running(tmp_path_factory.mktemp("pages"), overrides) as replica:
        yield replica


def card_link(server: Replica) -> str:
    findings = {"history": {"trauma": "present"}, "pain": {"locations": ["groin"]}}
    prefetch = {"patient": patient(birthDate="1950-03-14"), "observations": bundle(observations_for(findings))}
    call = hook_call({**prefetch, "conditions": bundle([]), "vitals": bundle([])})
    response = requests.post(f"{server.url}/cds-services/leg-raise-triage", json=call, timeout=10)
    assert response.status_code == 200, response.text
    card = response.json()["cards"][0]
    assert card["indicator"] == "critical"  # emergency (policy SP-7 p3: an older patient's fall)
    links = {link["label"]: link["url"] for link in card["links"]}
    return links[f"Rule {RULE}"]


def test_a_card_rule_link_opens_its_page_in_chromium_without_a_credential(server, tmp_path):
    url = card_link(server)
    assert urlsplit(url).path == f"/knowledge/rules/{RULE}"
    assert requests.get(f"{server.url}/v1/rules/{RULE}", timeout=10).status_code == 401  # the API stays closed
    screenshot = Path(os.environ.get("PAGES_SCREENSHOT") or tmp_path / "rule-page.png")
    seen: list[str] = []
    console: list[str] = []
    with playwright.sync_playwright() as p, loopback_browser(p) as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 1500})
        page.on("request", lambda request: seen.append(request.url))
        page.on("console", lambda message: console.append(message.text))
        response = page.goto(url, timeout=TIMEOUT_MS)
        assert response is not None and response.status == 200
        assert "style-src 'self'" in response.headers["content-security-policy"]
        assert page.locator("h1").inner_text() == f"Rule {RULE}"
        assert "aged 65 or over" in page.locator(".condition").inner_text()
        assert "Emergency" in page.locator(".effects").inner_text()
        marked = page.locator("mark").first
        marked.wait_for(timeout=TIMEOUT_MS)
        assert len(marked.inner_text()) > 40
        # The stylesheet applied: the passage is on the page's yellow, not the browser's default mark.
        assert marked.evaluate("m => getComputedStyle(m).backgroundColor") == "rgb(255, 224, 102)"
        page.screenshot(path=str(screenshot), full_page=False)
    hosts = {urlsplit(u).netloc for u in seen}
    assert hosts == {urlsplit(server.url).netloc}, hosts  # no outside asset
    paths = {urlsplit(u).path for u in seen} - {"/favicon.ico"}  # the browser's own guess, if it makes one
    assert paths == {f"/knowledge/rules/{RULE}", "/knowledge/pages.css"}
    assert not [line for line in console if "Content Security Policy" in line], console
    assert screenshot.stat().st_size > 20_000
