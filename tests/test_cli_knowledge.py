"""`python -m service knowledge check`: the knowledge base validated as start-up does, and its coverage.

The coverage report lists every section of every source with what cites it; a section cited by
none needs a reason in coverage.yaml, and a reason for a cited or unknown section is stale.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.knowledge import load_knowledge
from tests.knowledge_copies import knowledge_with

pytestmark = pytest.mark.cli

ROOT = Path(__file__).resolve().parents[1]


def check(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "service", "knowledge", "check", *args], cwd=ROOT, capture_output=True, timeout=120
    )
    done.text = done.stdout.decode() + done.stderr.decode()  # type: ignore[attr-defined]
    return done


def test_the_bundled_knowledge_covers_every_section_or_says_why(seeds_dir):
    done = check("--texts", str(seeds_dir))  # every citation checked against the texts too
    assert done.returncode == 0, done.text
    kb = load_knowledge()
    for source in kb.sources:
        for section in source["sections"]:
            assert f"  {section['id']}" in done.text  # every section is listed
    # A red-flag section lists its rules; a page-navigation section its recorded reason.
    assert "when_to_seek (When to Seek Professional Guidance): rule RF-CES-BLADDER" in done.text
    assert "preamble: cited by none: Page navigation, no content." in done.text
    assert "0 problem(s)" in done.text


def test_an_uncited_section_without_a_reason_fails(tmp_path):
    reason = "    training_log: The author's personal anecdote; not actionable.\n"
    done = check("--knowledge", str(knowledge_with(tmp_path, "coverage.yaml", old=reason, new="")))
    assert done.returncode == 1
    assert "training_log (My Training Log: Real Talk): cited by none: NO REASON RECORDED" in done.text
    assert "problem: 003 training_log: cited by none, and no reason recorded" in done.text


def test_a_stale_reason_fails(tmp_path):
    stale = '  "000":\n    when_to_seek: Not needed.\n    gone: Removed.\n'
    done = check("--knowledge", str(knowledge_with(tmp_path, "coverage.yaml", append=stale)))
    assert done.returncode == 1
    assert "problem: 000 when_to_seek: cited, yet coverage.yaml says why it is not" in done.text
    assert "problem: 000 gone: in coverage.yaml, but no such section" in done.text


def test_an_invalid_knowledge_base_is_refused_with_every_problem(tmp_path):
    folder = knowledge_with(tmp_path, old="level: emergency", new="level: soonish")
    rules = folder / "rules.yaml"
    rules.write_text(rules.read_text().replace("level: emergency", "level: soonish", 1))  # a second rule
    done = check("--knowledge", str(folder))
    assert done.returncode == 2
    assert done.text.count("soonish") >= 2  # both rules named, not just the first


def test_the_cli_reads_the_services_settings(tmp_path):
    """Issue 20: the CLI reads TRIAGE_* as the service does: the knowledge it would load, checked the same
    way, and a misspelt setting stops it with the variable named."""
    folder = knowledge_with(tmp_path, old="level: emergency", new="level: soonish")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    cli = [sys.executable, "-m", "service", "knowledge", "check"]
    run = functools.partial(subprocess.run, cli, cwd=ROOT, capture_output=True, text=True, timeout=120)
    done = run(env={**env, "TRIAGE_KNOWLEDGE_DIR": str(folder)})
    assert done.returncode == 2 and "soonish" in done.stderr  # the folder the setting names was checked
    misspelt = run(env={**env, "TRIAGE_KNOWLEGDE_DIR": str(folder)})
    assert misspelt.returncode == 2 and "TRIAGE_KNOWLEGDE_DIR: not a setting of this service" in misspelt.stderr
