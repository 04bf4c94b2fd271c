"""The README and the guides under docs/: short enough to read, every link lands, every command runs.

Curl examples run against a live server in tests/test_readme.py. Every other command in a shell block
is run by the test named for it in COMMANDS (a new command fails here until it is given one), and the
ones no other test runs are run here.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live import free_port, http_get, wait_until
from tests.test_readme import DOCUMENTS, FENCE, README, ROOT

README_MAX_LINES = 220
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+ (.+)$", re.M)

# Each command in a shell block of the README or a guide (continuation lines joined, comments dropped)
# and the test that runs it.
COMMANDS = {
    "make run": "tests/test_docs.py::test_make_run_serves_in_open_mode_on_loopback",
    "make test": ".ci/run",  # CI runs it on a clean clone of every submission
    "python -c \"from service.auth.policy import key_hash; print(key_hash('the-new-key'))\"": (
        "tests/test_docs.py::test_the_key_hash_command_prints_what_the_keys_file_holds"
    ),
    "python -m service evaluate examples/cases.jsonl -o results.jsonl": (
        "tests/test_cli_evaluate.py::test_a_clean_file_exits_0_and_shows_progress_on_a_terminal"
    ),
    "python -m service evaluate examples/cases.jsonl --compare path/to/changed/knowledge": (
        "tests/test_cli_evaluate.py::test_compare_names_the_changed_cases_and_refuses_a_downgrade"
    ),
    "pip install openapi-python-client": "tests/test_sdks.py::test_openapi_python_client",  # pinned in the test extra
    "openapi-python-client generate --path openapi.yaml --meta none --output-path triage_client": (
        "tests/test_sdks.py::test_openapi_python_client"
    ),
}


def shell_commands(path: Path) -> list[str]:
    """The commands of the document's shell blocks other than curl examples."""
    commands = []
    for block in FENCE.finditer(path.read_text(encoding="utf-8")):
        if block.group(1) != "sh" or "curl " in block.group(2):
            continue
        joined = block.group(2).replace("\\\n", " ")
        for line in joined.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(re.sub(r"\s+", " ", command))
    return commands


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into a guide under docs/"


def test_the_quick_start_says_what_a_newcomer_needs_to_know():
    """Before this, a newcomer had to find out for themselves that `make run` is unauthenticated,
    where the source texts come from, and what the service is for."""
    text = README.read_text(encoding="utf-8")
    before, _, rest = text.partition("## Quick start")
    quick_start = rest.partition("\n## ")[0]
    assert "Clinical scope" in before and "intended-use.md" in before
    assert "unauthenticated" in quick_start and "open mode" in quick_start
    assert "source texts" in quick_start and "../shared/seeds" in quick_start


def test_the_readme_points_to_every_guide():
    text = README.read_text(encoding="utf-8")
    for guide in DOCUMENTS[1:]:
        assert f"({guide.relative_to(ROOT)})" in text, f"README does not link {guide.relative_to(ROOT)}"


@pytest.mark.parametrize("document", [*DOCUMENTS, ROOT / "CHANGELOG.md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_lands(document):
    broken = []
    for target in LINK.findall(document.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        landed = (document.parent / file_part).resolve() if file_part else document
        if not landed.exists():
            broken.append(target)
        elif anchor and landed.suffix == ".md":
            anchors = {slug(h) for h in HEADING.findall(landed.read_text(encoding="utf-8"))}
            if anchor not in anchors:
                broken.append(target)
    assert not broken, f"{document.relative_to(ROOT)}: links that land nowhere: {broken}"


def test_every_command_is_run_by_a_named_test():
    found = {command for path in DOCUMENTS for command in shell_commands(path)}
    unrun = found - set(COMMANDS)
    assert not unrun, f"commands no test runs (add a test and name it in COMMANDS): {sorted(unrun)}"
    assert set(COMMANDS) <= found, f"COMMANDS names commands no document shows: {sorted(set(COMMANDS) - found)}"
    for runner in set(COMMANDS.values()):
        file_name, _, test_name = runner.partition("::")
        text = (ROOT / file_name).read_text(encoding="utf-8")
        assert not test_name or f"def {test_name}(" in text, f"{runner} does not exist"
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.cli
def test_the_key_hash_command_prints_what_the_keys_file_holds():
    [command] = [c for c in COMMANDS if "key_hash" in c]
    done = subprocess.run(command.replace("python ", f"{sys.executable} ", 1), shell=True, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip() == hashlib.sha256(b"the-new-key").hexdigest()


@pytest.mark.live
def test_make_run_serves_in_open_mode_on_loopback():
    """`make run` as the README gives it (on a free port): it serves, unauthenticated, and says so."""
    make = shutil.which("make")
    assert make, "make is not installed"
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TRIAGE_", "MAKE"))}
    process = subprocess.Popen(
        [make, "--no-print-directory", "run", f"PORT={port}"],
        cwd=ROOT,
        env={**env, "WEB_CONCURRENCY": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ready = wait_until(lambda: _answers(port, "/readyz") == 200, 60, interval=0.2)
        assert ready, "make run did not answer /readyz within 60 s"
        assert _answers(port, "/v1/knowledge") == 200, "open mode: /v1 answers without a credential"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=40)
    assert b"api_open" in output, "make run must say at start-up that /v1 is unauthenticated"


def _answers(port: int, path: str) -> int:
    try:
        return http_get(port, path)[0]
    except OSError:
        return 0
