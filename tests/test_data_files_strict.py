"""Every data file has a strict shape: a misspelt key, a key written twice or a value of the wrong type
stops start-up with the file and the path inside it named, and `python -m service knowledge check`
prints the same problems (issue 20, "Strict schemas for every data file").

Each case edits one valid file in one place and expects one exact problem line, so a check that
silently stopped running (or named the wrong place) fails here.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from service import create_app
from service.auth.policy import key_hash
from service.cli import main as cli
from service.knowledge import KnowledgeError, load_knowledge
from service.knowledge.yamlfile import DuplicateKeyError, load_yaml
from tests.knowledge_copies import knowledge_with

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Edit:
    file: str
    old: str
    new: str
    problem: str  # the line (or its start) the loader must give: file, path in it, message


# --- the knowledge folder: five knowledge files, coverage.yaml and the FHIR mapping ----------------
KNOWLEDGE = {
    "rules-misspelt": Edit(
        "rules.yaml",
        "      referrals: [{to: emergency_department",
        "      referals: [{to: emergency_department",
        "rules.yaml: rules[0].then.referals: unknown key (line 26)",
    ),
    "rules-duplicate": Edit(
        "rules.yaml",
        "      causes: {cauda_equina_syndrome: 3}\n",
        "      causes: {cauda_equina_syndrome: 3}\n      level: urgent\n",
        "rules.yaml: rules[0].then.level: duplicate key (lines 24 and 26)",
    ),
    "rules-wrong-type": Edit(
        "rules.yaml",
        "      causes: {cauda_equina_syndrome: 3}",
        "      causes: [cauda_equina_syndrome]",
        "rules.yaml: rules[0].then.causes: must be a mapping (line 25)",
    ),
    "findings-misspelt": Edit(
        "findings.yaml",
        "    red_flag: true\n",
        "    red_flags: true\n",
        "findings.yaml: findings['findings.bladder'].red_flags: unknown key (line 16)",
    ),
    "findings-duplicate": Edit(
        "findings.yaml",
        "  findings.saddle_numbness:\n    kind: tri\n",
        "  findings.saddle_numbness:\n    kind: tri\n    kind: enum\n",
        "findings.yaml: findings['findings.saddle_numbness'].kind: duplicate key (lines 26 and 27)",
    ),
    "findings-wrong-type": Edit(
        "findings.yaml",
        "    max: 10\n",
        "    max: ten\n",
        "findings.yaml: findings['findings.pain.severity'].max: must be a whole number (line 59)",
    ),
    "findings-without-kind": Edit(  # was a bare KeyError at start-up
        "findings.yaml",
        "  findings.saddle_numbness:\n    kind: tri\n",
        "  findings.saddle_numbness:\n",
        "findings.yaml: findings['findings.saddle_numbness'].kind: required key missing (line 25)",
    ),
    "catalog-misspelt": Edit(
        "catalog.yaml",
        "    referral: emergency_department",
        "    referal: emergency_department",
        "catalog.yaml: levels.emergency.referal: unknown key (line 11)",
    ),
    "catalog-duplicate": Edit(
        "catalog.yaml",
        'version: "2026.12.2"\n',
        'version: "2026.12.2"\nversion: "2026.12.3"\n',
        "catalog.yaml: version: duplicate key (lines 2 and 3)",
    ),
    "catalog-wrong-type": Edit(
        "catalog.yaml",
        "  min_age: 16",
        "  min_age: '16'",
        "catalog.yaml: scope.min_age: must be a whole number (line 67)",
    ),
    "citations-misspelt": Edit(
        "citations.yaml",
        '000.intro.failed_slr: {"source": "000", "section": "intro", "paragraph": 1,',
        '000.intro.failed_slr: {"source": "000", "section": "intro", "paragraf": 1,',
        "citations.yaml: citations['000.intro.failed_slr'].paragraf: unknown key (line 6)",
    ),
    "citations-duplicate": Edit(
        "citations.yaml",
        '000.intro.failed_slr: {"source": "000",',
        '000.intro.failed_slr: {"source": "000", "source": "001",',
        "citations.yaml: citations['000.intro.failed_slr'].source: duplicate key (lines 6 and 6)",
    ),
    "citations-wrong-type": Edit(
        "citations.yaml",
        '"sentences": [1, 3], "start": 0,',
        '"sentences": [1, 3], "start": "0",',
        "citations.yaml: citations['000.intro.failed_slr'].start: must be a whole number (line 6)",
    ),
    "sources-misspelt": Edit(
        "sources.yaml",
        "  title: Failed straight leg raise",
        "  titel: Failed straight leg raise",
        "sources.yaml: sources[0].titel: unknown key (line 5)",
    ),
    "sources-duplicate": Edit(
        "sources.yaml",
        "  kind: consumer_health_article\n",
        "  kind: consumer_health_article\n  kind: fitness_blog\n",
        "sources.yaml: sources[0].kind: duplicate key (lines 6 and 7)",
    ),
    "sources-wrong-type": Edit(
        "sources.yaml",
        "  length: 5453",
        "  length: [5453]",
        "sources.yaml: sources[0].length: must be a whole number (line 9)",
    ),
    "coverage-misspelt": Edit(
        "coverage.yaml",
        "uncited:",
        "uncitd:",
        "coverage.yaml: uncitd: unknown key (line 4)",
    ),
    "coverage-duplicate": Edit(
        "coverage.yaml",
        "    author: About",
        "    why_bad: Again.\n    author: About",
        "coverage.yaml: uncited['002'].why_bad: duplicate key (lines 8 and 9)",
    ),
    "coverage-wrong-type": Edit(
        "coverage.yaml",
        "    author: About the author, no clinical or exercise content.",
        "    author: [About the author]",
        "coverage.yaml: uncited['002'].author: must be a string (line 9)",
    ),
    "mapping-misspelt": Edit(
        "fhir_mapping.yaml",
        "    display: Active straight leg raise",
        "    dispaly: Active straight leg raise",
        "fhir_mapping.yaml: observations['triage|slr-result'].dispaly: unknown key (line 45)",
    ),
    "mapping-duplicate": Edit(
        "fhir_mapping.yaml",
        "    finding: findings.slr.result\n",
        "    finding: findings.slr.result\n    finding: findings.slr.side\n",
        "fhir_mapping.yaml: observations['triage|slr-result'].finding: duplicate key (lines 46 and 47)",
    ),
    "mapping-wrong-type": Edit(
        "fhir_mapping.yaml",
        "    member: anterior_thigh",
        "    member: [anterior_thigh]",
        "fhir_mapping.yaml: observations['triage|sensation-loss-anterior-thigh'].member: must be a string (line 70)",
    ),
}


def _break(tmp_path: Path, edit: Edit) -> Path:
    return knowledge_with(tmp_path, edit.file, old=edit.old, new=edit.new)


def _problems(message: str) -> list[str]:
    """The problem lines under a message's first line ("invalid ...:"), without their indent and dash."""
    return [line.strip().removeprefix("- ") for line in message.splitlines()[1:]]


def _start_up_problems(folder: Path, edit: Edit) -> list[str]:
    """The problem lines start-up stops with (the knowledge folder, or the mapping in it as a site file)."""
    config = {"TESTING": True, "KNOWLEDGE_DIR": str(folder)}
    if edit.file == "fhir_mapping.yaml":
        config = {"TESTING": True, "CDS_MAPPING_FILE": str(folder / edit.file)}
    with pytest.raises(ValueError if edit.file == "fhir_mapping.yaml" else KnowledgeError) as stopped:
        create_app(config)
    return _problems(str(stopped.value))


@pytest.mark.parametrize("case", list(KNOWLEDGE))
def test_a_broken_knowledge_folder_file_stops_start_up_and_the_check_lists_the_same(tmp_path, capsys, case):
    edit = KNOWLEDGE[case]
    folder = _break(tmp_path, edit)
    problems = _start_up_problems(folder, edit)
    prefix = f"{folder}/" if edit.file == "fhir_mapping.yaml" else ""  # a mapping file is named by its path
    assert any(line.startswith(prefix + edit.problem) for line in problems), problems
    assert all(line.startswith(prefix + edit.file) for line in problems), problems  # only the edited file

    capsys.readouterr()  # start-up's own log lines (a mapping is read after the knowledge loaded)
    assert cli(["knowledge", "check", "--knowledge", str(folder)]) == 2
    printed = capsys.readouterr()
    assert _problems(printed.err) == problems
    assert printed.out == ""  # no coverage report for a knowledge base that does not load


def test_every_problem_of_every_file_is_listed_at_once(tmp_path):
    folder = _break(tmp_path, KNOWLEDGE["rules-misspelt"])
    for case in ("findings-without-kind", "catalog-wrong-type", "citations-duplicate", "coverage-misspelt"):
        edit = KNOWLEDGE[case]
        path = folder / edit.file
        path.write_text(path.read_text().replace(edit.old, edit.new, 1))
    with pytest.raises(KnowledgeError) as stopped:
        load_knowledge(folder)
    message = str(stopped.value)
    for case in ("rules-misspelt", "findings-without-kind", "catalog-wrong-type", "citations-duplicate"):
        assert KNOWLEDGE[case].problem in message
    assert "coverage.yaml: uncitd: unknown key" in message


@pytest.mark.cli
def test_the_check_is_the_command_line_tool(tmp_path):
    folder = _break(tmp_path, KNOWLEDGE["findings-without-kind"])
    done = subprocess.run(
        [sys.executable, "-m", "service", "knowledge", "check", "--knowledge", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert KNOWLEDGE["findings-without-kind"].problem in done.stderr
    assert "Traceback" not in done.stderr


def test_conditions_are_checked_to_the_leaf(tmp_path):
    folder = knowledge_with(
        tmp_path,
        "rules.yaml",
        old="when: {fact: findings.bowel, is: incontinence}",
        new="when: {all: [{fact: findings.bowel, is: incontinence, side: left}, {ref: [x]}, 3]}",
    )
    with pytest.raises(KnowledgeError) as stopped:
        load_knowledge(folder)
    message = str(stopped.value)
    assert "rules.yaml: rules[1].when.all[0].side: unknown key (line 31)" in message
    assert "rules.yaml: rules[1].when.all[1].ref: must be a string (line 31)" in message
    assert "rules.yaml: rules[1].when.all[2]: must be a condition" in message


def test_valid_files_load_as_before():
    kb = load_knowledge(ROOT / "service" / "knowledge")
    assert kb.sha256 == load_knowledge().sha256
    assert len(kb.rules) == 75


# --- the API-key file and the trust file ------------------------------------------------------------
KEYS = f"keys:\n  - id: clinic-a\n    sha256: {key_hash('a-key')}\n    scopes: [triage]\n"
TRUST = "issuers:\n  - iss: https://ehr.example\n    jwks_url: https://ehr.example/jwks\n"

CONFIG_FILES = {
    "keys-misspelt": (
        "API_KEYS_FILE",
        KEYS,
        "    scopes:",
        "    revokd: true\n    scopes:",
        "keys[0].revokd: unknown key (line 4)",
    ),
    "keys-duplicate": (
        "API_KEYS_FILE",
        KEYS,
        "    scopes: [triage]\n",
        "    scopes: [triage]\n    scopes: [triage, docs]\n",
        "keys[0].scopes: duplicate key (lines 4 and 5)",
    ),
    "keys-wrong-type": ("API_KEYS_FILE", KEYS, "[triage]", "triage", "keys[0].scopes: must be a list (line 4)"),
    "trust-misspelt": ("CDS_TRUST_FILE", TRUST, "jwks_url:", "jwks_uri:", "issuers[0]: unknown key 'jwks_uri'"),
    "trust-duplicate": (
        "CDS_TRUST_FILE",
        TRUST,
        "    jwks_url:",
        "    iss: https://other.example\n    jwks_url:",
        "issuers[0].iss: duplicate key (lines 2 and 3)",
    ),
    "trust-wrong-type": (
        "CDS_TRUST_FILE",
        TRUST,
        "  - iss: https://ehr.example",
        "  - iss: [https://ehr.example]",
        "issuers[0]: missing iss (a non-empty string)",
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_FILES))
def test_a_broken_key_or_trust_file_stops_start_up(tmp_path, case):
    setting, text, old, new, problem = CONFIG_FILES[case]
    assert old in text
    path = tmp_path / "file.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ValueError) as stopped:
        create_app({"TESTING": True, setting: str(path), "PUBLIC_BASE_URL": "https://triage.example"})
    message = str(stopped.value)
    assert f"{path}: {problem}" in message
    assert key_hash("a-key") not in message  # never the file's text


def test_a_duplicate_key_names_its_path_and_lines_but_not_the_text():
    with pytest.raises(DuplicateKeyError) as raised:
        load_yaml("keys:\n  - id: a\n    sha256: secret-one\n    sha256: secret-two\n")
    assert str(raised.value) == "keys[0].sha256: duplicate key (lines 3 and 4)"


@pytest.mark.parametrize("text", ["a: &x [*x]\n", "a: &x {b: *x}\n"])
def test_a_recursive_alias_is_refused(text):
    with pytest.raises(Exception, match="recursive alias"):
        load_yaml(text)
