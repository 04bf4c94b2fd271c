"""The rules as a picture: findings -> rules -> levels, causes and referrals (Graphviz).

`python -m service knowledge graph -o docs/knowledge-graph.svg` draws it, so a reviewer can see the
decision logic at a glance: which findings each rule reads, and what it sets. Red-flag rules (those
setting the most urgent level) are drawn in red, fitness-only rules dashed. The picture is built
from the knowledge base alone; Graphviz's `dot` (Debian package graphviz) lays it out.
"""

from __future__ import annotations

from pathlib import Path

import graphviz

from service.engine.model import KnowledgeBase

FORMATS = ("svg", "png")
INSTALL_GRAPHVIZ = (
    "Graphviz's `dot` is needed to draw the graph and is not on PATH: install Graphviz "
    "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz)"
)
URGENT = {0: "#b71c1c", 1: "#e65100", 2: "#1565c0", 3: "#2e7d32"}  # level rank -> colour


class GraphvizMissing(RuntimeError):
    """Graphviz's `dot` binary is not installed (the Python package only drives it)."""


def knowledge_graph(kb: KnowledgeBase) -> graphviz.Digraph:
    """The graph of `kb`: one node per finding read, rule, level, cause and referral target."""
    title = f"Knowledge {kb.version}: {len(kb.rules)} rules (red: emergency, dashed: fitness sources only)"
    dot = graphviz.Digraph("knowledge", graph_attr={"rankdir": "LR", "ranksep": "1.6", "nodesep": "0.12",
                                                    "fontname": "Helvetica", "label": title, "labelloc": "t"},
                           node_attr={"fontname": "Helvetica", "fontsize": "10", "shape": "box", "style": "rounded"},
                           edge_attr={"arrowsize": "0.5", "color": "#777777"})  # fmt: skip
    with dot.subgraph(name="cluster_findings", graph_attr={"label": "findings", "color": "#cccccc"}) as findings:
        for path in kb.findings:
            findings.node(f"f__{path}", path.removeprefix("findings."))
    with dot.subgraph(
        name="cluster_outcomes", graph_attr={"label": "levels, causes, referrals", "color": "#cccccc"}
    ) as out:
        for level in sorted(kb.levels.values(), key=lambda lv: lv.rank):
            out.node(f"l__{level.id}", level.label, color=URGENT.get(level.rank, "black"), penwidth="2")
        for level in kb.levels.values():
            if level.referral in kb.referral_targets:  # the referral every answer at that level carries
                out.edge(f"l__{level.id}", f"r__{level.referral}", style="dashed")
        for cause in kb.causes.values():
            out.node(f"c__{cause.id}", cause.name, shape="ellipse")
        for target in kb.referral_targets:
            out.node(f"r__{target}", f"refer: {target}", shape="note")
    for rule in kb.rules:
        node = f"rule__{rule.id}"
        colour = URGENT.get(kb.levels[rule.level].rank, "black") if rule.level else "black"
        dashed = all(c.authority == "fitness" for c in rule.citations)
        dot.node(node, rule.id, color=colour, style="rounded,dashed" if dashed else "rounded",
                 tooltip=rule.statement)  # fmt: skip
        for fact in dict.fromkeys(atom.fact for atom in rule.when.atoms()):
            dot.edge(f"f__{fact}", node)
        if rule.level:
            dot.edge(node, f"l__{rule.level}", color=colour)
        for cause, weight in rule.causes:
            dot.edge(node, f"c__{cause}", style="solid" if weight > 0 else "dotted",
                     tooltip=f"{'+' if weight > 0 else ''}{weight}")  # fmt: skip
        for referral in rule.referrals:
            dot.edge(node, f"r__{referral.to}", label=referral.urgency, fontsize="8")
    return dot


def draw(kb: KnowledgeBase, out: Path) -> Path:
    """Render the graph to `out` (.svg or .png); returns the file written."""
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"{out}: the picture is drawn as .svg or .png")
    try:
        picture = knowledge_graph(kb).pipe(format=fmt)
    except graphviz.ExecutableNotFound:  # a RuntimeError that names no package to install
        raise GraphvizMissing(INSTALL_GRAPHVIZ) from None
    out.write_bytes(picture)
    return out
