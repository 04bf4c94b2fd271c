"""docs/clinical-safety/: the intended use, the policy and the hazard log hold together with the code.

A hazard naming a rule or a test that does not exist fails here, and so does a rule setting a level
that no hazard controls; the policy sections that rules and scenarios cite must exist.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "clinical-safety"
FIELDS = (
    "Hazard",
    "Cause",
    "Effect",
    "Severity",
    "Likelihood before",
    "Risk before",
    "Rules",
    "Tests",
    "Other controls",
    "Likelihood after",
    "Risk after",
    "Residual risk",
)
SEVERITIES = ("Minor", "Significant", "Considerable", "Major", "Catastrophic")
LIKELIHOODS = ("Very low", "Low", "Medium", "High", "Very high")
# The DCB0129 matrix the log states: RISK[likelihood][severity index].
RISK = {
    "Very high": (3, 4, 4, 5, 5),
    "High": (2, 3, 3, 4, 5),
    "Medium": (2, 2, 3, 3, 4),
    "Low": (1, 2, 2, 3, 4),
    "Very low": (1, 1, 2, 2, 3),
}


def hazards() -> dict[str, dict[str, str]]:
    """Hazard id -> field -> text, from the log's `## H-nn` sections and their `- Field: text` items."""
    out: dict[str, dict[str, str]] = {}
    text = (DOCS / "hazard-log.md").read_text(encoding="utf-8")
    for block in re.split(r"(?m)^## ", text)[1:]:
        heading, _, body = block.partition("\n")
        if not heading.startswith("H-"):
            continue
        items = re.findall(r"(?ms)^- ([A-Za-z ]+): (.*?)(?=^- |\Z)", body)
        out[heading.split()[0]] = {name: " ".join(value.split()) for name, value in items}
    return out


def defined_tests() -> set[str]:
    """Every `path::name` of a test function defined in tests/."""
    found = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                found.add(f"tests/{path.name}::{node.name}")
    return found


HAZARDS = hazards()


def test_the_documents_are_there():
    for name in ("intended-use.md", "policy.md", "hazard-log.md"):
        assert (DOCS / name).is_file(), name
    assert len(HAZARDS) >= 15
    assert [f"H-{n:02d}" for n in range(1, 8)] <= sorted(HAZARDS)  # the review's seven


@pytest.mark.parametrize("hazard", sorted(HAZARDS))
def test_every_hazard_has_the_dcb0129_fields_and_a_consistent_risk(hazard):
    entry = HAZARDS[hazard]
    assert set(FIELDS) <= set(entry), set(FIELDS) - set(entry)
    severity = SEVERITIES.index(entry["Severity"])
    for when in ("before", "after"):
        likelihood = entry[f"Likelihood {when}"]
        assert int(entry[f"Risk {when}"]) == RISK[likelihood][severity], (hazard, when)
    assert int(entry["Risk after"]) <= int(entry["Risk before"])


@pytest.mark.parametrize("hazard", sorted(HAZARDS))
def test_every_hazard_names_rules_and_tests_that_exist(hazard, kb):
    entry = HAZARDS[hazard]
    rules = [r.strip() for r in entry["Rules"].split(",")]
    assert rules and set(rules) <= set(kb.rules_by_id), set(rules) - set(kb.rules_by_id)
    tests = [t.strip() for t in entry["Tests"].split(",")]
    assert tests and set(tests) <= defined_tests(), set(tests) - defined_tests()


def test_every_level_setting_rule_is_controlled_by_a_hazard(kb):
    controlled = {r.strip() for entry in HAZARDS.values() for r in entry["Rules"].split(",")}
    setters = {rule.id for rule in kb.rules if rule.level}
    assert setters <= controlled, sorted(setters - controlled)


def test_policy_sections_named_by_scenarios_and_hazards_exist(kb):
    sections = {s["id"] for src in kb.sources if src["id"] == "SP" for s in src["sections"]}
    named = set(re.findall(r"\bSP-\d+\b", (DOCS / "hazard-log.md").read_text(encoding="utf-8")))
    for path in (ROOT / "tests").glob("test_clinical_*.py"):
        named |= set(re.findall(r"\bSP-\d+\b", path.read_text(encoding="utf-8")))
    assert named and named <= sections, named - sections
    hazards = set(re.findall(r"\bH-\d\d\b", (ROOT / "tests" / "test_clinical_policy.py").read_text()))
    assert hazards <= set(HAZARDS), hazards - set(HAZARDS)


def test_the_policy_names_the_guidance_it_follows():
    """Each section that sets levels names its public guidance and whether it was checked."""
    text = (DOCS / "policy.md").read_text(encoding="utf-8")
    for guidance in ("NICE NG59", "GIRFT", "CG75", "NG234", "CG124", "BOAST", "CG161"):
        assert guidance in text, guidance
    assert "to verify" in text and "checked" in text
