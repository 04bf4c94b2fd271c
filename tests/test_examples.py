"""examples/cases.jsonl, the regression set for knowledge changes, answered as its table says.

Each line is a POST /v1/triage body written from a source section (examples/README.md names it,
with the expected level and whether the answer is provisional). The file is evaluated by the real
command, `python -m service evaluate`, and every answer checked against the table; the complete
exams are the clinical scenarios of tests/test_clinical_rules.py and the policy scenarios of
tests/test_clinical_policy.py, so they cannot drift apart.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.clinical_cases import CASES, POLICY_CASES
from tests.scenarios import ADULT, exam

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def table() -> list[dict[str, str]]:
    rows = [line for line in (EXAMPLES / "README.md").read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in row.strip("|").split("|")), strict=True)) for row in rows[1:]]


@pytest.mark.cli
def test_every_case_gets_the_level_its_source_section_says(tmp_path):
    out = tmp_path / "results.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "service", "evaluate", str(EXAMPLES / "cases.jsonl"), "-o", str(out), "--no-progress"],
        cwd=ROOT, capture_output=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr  # every line valid
    results = [json.loads(line) for line in out.read_text().splitlines()]
    expected = table()
    assert len(results) == len(expected) >= 36  # a few dozen
    for row, result in zip(expected, results, strict=True):
        assert result["line"] == int(row["line"])
        triage = result["answer"]["triage"]
        assert triage["level"] == row["level"], row
        assert triage["provisional"] is (row["provisional"] == "yes"), row
        assert triage["incomplete"] is (row["incomplete"] == "yes"), row
        if row["provisional"] == "yes":
            assert result["answer"]["missing"], row  # unknown findings are asked for, never assumed


def test_the_complete_exams_are_the_clinical_scenarios():
    lines = (EXAMPLES / "cases.jsonl").read_bytes().splitlines()
    rows = table()
    for number, case in enumerate(CASES):
        assert orjson.loads(lines[number]) == {"patient": ADULT, "findings": exam(case.changes)}, case.name
        assert rows[number]["case"] == case.name and rows[number]["level"] == case.level
    first = len(lines) - len(POLICY_CASES)
    for number, case in enumerate(POLICY_CASES, first):
        body = {"findings": exam(case.changes)} | ({"patient": case.patient} if case.patient else {})
        assert orjson.loads(lines[number]) == body, case.name
        assert rows[number]["case"] == case.name and rows[number]["level"] == case.level
