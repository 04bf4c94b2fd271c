"""The oracle for the indexed engine: every rule checked on every call by logic.py's Kleene tree, on the
facts build_facts reads.

What follows from the verdicts is worked out by the engine's own decide() (one decision builder). What
this oracle checks is what the engine optimises: which rules it judges (the index, the generated
reader, the truth tables) and the decisions and traces it remembers. Not used by the service.
"""

from __future__ import annotations

from typing import Any

from service.engine.facts import build_facts
from service.engine.model import KnowledgeBase
from service.engine.plan import plan_for
from service.engine.triage import Context, answer_body, decide, incomplete, population, set_aside, trace_entry


def evaluate(kb: KnowledgeBase, request: dict[str, Any]) -> dict[str, Any]:
    """Evaluate validated request data; returns the response body as plain data."""
    plan = plan_for(kb)
    facts = build_facts(request, kb.findings)
    found = tuple(i for i, conflict in enumerate(kb.conflicts) if conflict.when.check(facts).truth)
    if found:
        facts = build_facts(set_aside(request, [p for i in found for p in kb.conflicts[i].unknown]), kb.findings)
    judged = []
    for rp in plan.rules:
        out = rp.rule.when.check(facts)
        judged.append((rp, (out.truth, out.matched, out.open, out.alone)))
    decision = decide(kb, plan, judged, Context(found, population(plan, facts), incomplete(plan, facts)))
    return answer_body(plan, decision, [trace_entry(rp, matched, facts) for rp, matched in decision.traced])
