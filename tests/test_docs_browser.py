"""/docs in a real browser: Debian's Chromium, headless, allowed no network beyond loopback.

The page is served by a live gunicorn. The test waits for Swagger UI to render the operations,
opens the triage operation, checks that its request example is shown and that every request the
page made went to the service itself, and takes a screenshot. `make screenshot` runs this test with
DOCS_SCREENSHOT=docs/api-docs.png to renew the one docs/rest-api.md shows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from schemas.examples import TRIAGE_REQUEST
from tests.browser import TIMEOUT_MS, ensure_chromium, loopback_browser
from tests.live import Replica, running

pytestmark = pytest.mark.browser


playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    ensure_chromium()
    with running(tmp_path_factory.mktemp("docs"), {"WEB_CONCURRENCY": "1", "TRIAGE_DOCS_OPEN": "true"}) as replica:
        yield replica


def test_docs_assets_come_from_the_service(server):
    page = requests.get(f"{server.url}/docs", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "http" not in page.text.replace(server.url, "")  # no absolute URL: nothing from elsewhere
    for path in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/docs/init.js"):
        assert requests.get(f"{server.url}{path}", timeout=10).status_code == 200, path
    licence = requests.get(f"{server.url}/docs/assets/LICENSE", timeout=10)
    assert "Apache License" in licence.text
    assert requests.get(f"{server.url}/docs/assets/index.html", timeout=10).status_code == 404


def test_docs_render_the_triage_operation_in_chromium(server, tmp_path):
    screenshot = Path(os.environ.get("DOCS_SCREENSHOT") or tmp_path / "api-docs.png")
    seen: list[str] = []
    with playwright.sync_playwright() as p, loopback_browser(p) as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.on("request", lambda request: seen.append(request.url))
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server.url}/docs", timeout=TIMEOUT_MS)
        operation = page.locator("#operations-triage-triage")
        operation.wait_for(timeout=TIMEOUT_MS)
        assert page.locator(".opblock").count() >= 8  # every operation is listed
        operation.locator(".opblock-summary").click()
        example = operation.locator(".body-param__example, .highlight-code").first
        example.wait_for(timeout=TIMEOUT_MS)
        shown = example.inner_text()
        page.screenshot(path=str(screenshot), full_page=False)
    assert not errors
    assert json.loads(shown) == TRIAGE_REQUEST  # the request example, as the OpenAPI document gives it
    hosts = {urlsplit(url).netloc for url in seen if not url.startswith(("data:", "blob:"))}
    assert hosts == {urlsplit(server.url).netloc}, hosts
    assert screenshot.stat().st_size > 20_000
