"""Debian's Chromium, headless, allowed no network beyond loopback: what the browser tests drive."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TIMEOUT_MS = 30_000


def ensure_chromium() -> None:
    if not Path(CHROMIUM).exists():  # make test installs it; a bare pytest run may not have
        subprocess.run(["bash", str(ROOT / "tools" / "ensure-debian-packages.sh"), "chromium"], check=True)


@contextmanager
def loopback_browser(playwright: Any) -> Iterator[Any]:
    """A Chromium browser (playwright's sync API) that reaches 127.0.0.1 only, closed on exit."""
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        # Nothing but loopback: any other host fails to resolve, and no proxy is used.
        args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--no-proxy-server"],
    )
    try:
        yield browser
    finally:
        browser.close()
