"""`python -m service knowledge graph`: the rules drawn as findings -> rules -> levels, causes, referrals.

Graphviz's `dot` comes from Debian's graphviz package (make test installs it). The picture the
knowledge authoring guide shows, docs/knowledge-graph.svg, must be the current knowledge's: a test
fails when a rule is added, removed or renamed without redrawing it (`make graph`).
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from service.knowledge import load_knowledge

pytestmark = pytest.mark.cli

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "knowledge-graph.svg"


def draw(out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "service", "knowledge", "graph", "-o", str(out)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, timeout=120)


def titles(path: Path) -> set[str]:
    """Graphviz writes each node's and edge's name as its <title>: "rule__X", "f__path->rule__X"."""
    return {html.unescape(t) for t in re.findall(r"<title>([^<]*)</title>", path.read_text())}


def drawn_rules(names: set[str]) -> set[str]:
    return {n.removeprefix("rule__") for n in names if n.startswith("rule__") and "->" not in n}


def test_every_rule_and_finding_read_is_drawn_with_its_outcomes(tmp_path):
    done = draw(tmp_path / "graph.svg")
    assert done.returncode == 0, done.stderr
    names = titles(tmp_path / "graph.svg")
    kb = load_knowledge()
    assert drawn_rules(names) == {rule.id for rule in kb.rules}
    for rule in kb.rules:
        for atom in rule.when.atoms():
            assert f"f__{atom.fact}->rule__{rule.id}" in names  # finding -> rule
        if rule.level:
            assert f"rule__{rule.id}->l__{rule.level}" in names  # rule -> level
        for cause, _ in rule.causes:
            assert f"rule__{rule.id}->c__{cause}" in names
        for referral in rule.referrals:
            assert f"rule__{rule.id}->r__{referral.to}" in names


def test_png_too_and_nothing_else(tmp_path):
    assert draw(tmp_path / "graph.png").returncode == 0
    assert (tmp_path / "graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    refused = draw(tmp_path / "graph.gif")
    assert refused.returncode == 2 and b".svg or .png" in refused.stderr


def test_the_committed_picture_is_the_current_knowledge():
    if not COMMITTED.exists():
        pytest.fail("docs/knowledge-graph.svg is missing: make graph")
    kb = load_knowledge()
    assert f"Knowledge {kb.version}: {len(kb.rules)} rules" in COMMITTED.read_text()
    assert drawn_rules(titles(COMMITTED)) == {rule.id for rule in kb.rules}, "redraw it: make graph"


def test_without_graphviz_it_says_so_in_one_line_and_how_to_install_it(tmp_path):
    # A PATH without Graphviz's `dot` (the interpreter is named by its full path, so it needs none).
    bare = tmp_path / "bin"
    bare.mkdir()
    command = [sys.executable, "-m", "service", "knowledge", "graph", "-o", str(tmp_path / "graph.svg")]
    env = {**os.environ, "PATH": str(bare)}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "Graphviz" in done.stderr and "apt-get install graphviz" in done.stderr
    assert not (tmp_path / "graph.svg").exists()
