"""A triage result as one CDS Hooks card: indicator by level, Markdown detail, suggestions and links."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.cds.extract import Note
from service.cds.fhir_out import (
    OWN_SYSTEM,
    all_citations,
    answer_notes,
    prune,
    risk_assessment,
    service_requests,
)
from service.engine.model import KnowledgeBase

SUMMARY_MAX = 139  # the spec asks for fewer than 140 characters
OVERRIDE_REASONS = (
    ("already-assessed", "Already assessed or referred for this problem"),
    ("findings-outdated", "The recorded findings are out of date"),
    ("findings-incorrect", "The recorded findings are wrong"),
    ("clinical-judgement", "Clinical judgement differs (documented in the record)"),
)
# (system, code) of each reason a card offers: what CDS feedback may name and the audit log records.
OFFERED_REASONS = frozenset((OWN_SYSTEM, f"override-{code}") for code, _ in OVERRIDE_REASONS)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&])")


@dataclass(frozen=True)
class CardContext:
    patient_id: str
    encounter_id: str | None
    base_url: str  # absolute, no trailing slash: where links point
    public: bool  # True when base_url is the configured public URL (then source.url is given)
    now: datetime


def escape(text: str) -> str:
    """Text from the EHR shown as literal Markdown (no links, HTML or formatting)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def summary(result: dict[str, Any], incomplete_label: str) -> str:
    """The card's one line: the level's label (or that the assessment is incomplete; a patient outside the
    intended population is in the label too), whether it is provisional, and the first cause to consider,
    never "most likely"."""
    triage = result["triage"]
    said_incomplete = triage["label"] == incomplete_label
    head = triage["label"] + (" (provisional)" if triage["provisional"] and not said_incomplete else "")
    text = f"{head}: {triage['action']}"
    if result["causes"] and not said_incomplete:
        text = f"{head}: consider {result['causes'][0]['name']} first. {triage['action']}"
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def referral_label(kb: KnowledgeBase, referral: dict[str, Any]) -> str:
    """ "Medical assessment by a physician (today)": the target's name and the urgency's word."""
    return f"{kb.referral_targets[referral['to']]} ({kb.urgencies[referral['urgency']].word})"


def indicator(kb: KnowledgeBase, result: dict[str, Any]) -> str:
    """The level's indicator (catalog); an info card that needs a look is a warning: an incomplete
    assessment, or a patient outside the intended population."""
    level = kb.levels[result["triage"]["level"]].indicator
    needs_a_look = result["triage"]["incomplete"] or result["scope"]["population"] == "out"
    return "warning" if level == "info" and needs_a_look else level


def triage_card(
    kb: KnowledgeBase, result: dict[str, Any], notes: list[Note], basis: list[str], ctx: CardContext
) -> dict[str, Any]:
    source: dict[str, Any] = {"label": f"Leg-raise triage (knowledge {result['knowledge']['version']})"}
    if ctx.public:
        source["url"] = f"{ctx.base_url}/knowledge"  # opened in the clinician's browser: the page, not the API
    card = {
        "uuid": str(uuid.uuid4()),
        "summary": summary(result, kb.incomplete["label"]),
        "indicator": indicator(kb, result),
        "detail": detail(kb, result, notes),
        "source": source,
        "suggestions": _suggestions(kb, result, basis, ctx),
        "selectionBehavior": "any",
        "overrideReasons": [
            {"system": OWN_SYSTEM, "code": f"override-{code}", "display": display} for code, display in OVERRIDE_REASONS
        ],
        "links": _links(result, ctx),
    }
    return prune(card)


def detail(kb: KnowledgeBase, result: dict[str, Any], notes: list[Note]) -> str:
    triage = result["triage"]
    lines = [f"**{triage['label']}.** {triage['action']}"]
    lines += [f"\n{note}" for note in answer_notes(result)[:-1]]  # the disclaimer closes the card
    if triage["provisional"]:
        lines.append(f"\nProvisional: {len(result['missing'])} finding(s) not yet known could make this more urgent.")
    if result["causes"]:
        lines.append("\n**Causes to consider**, most specific evidence first (a differential, not probabilities):")
        lines += [f"{i}. {c['name']}: {c['strength']} fit" for i, c in enumerate(result["causes"], 1)]
    referrals = [r for r in result["referrals"] if r["to"] != "self_management"]
    if referrals:
        lines.append("\n**Referrals:**")
        for ref in referrals:
            tests = f", with {', '.join(kb.tests[t] for t in ref['tests'])}" if ref["tests"] else ""
            lines.append(f"- {referral_label(kb, ref)}{tests}")
    if result["advice"]:
        lines.append("\n**Self-management advice:**")
        lines += [f"- {a['text']}" for a in result["advice"]]
    if result["missing"]:
        lines.append("\n**Still to ask:**")
        lines += [f"- {m['question']}" for m in result["missing"]]
    for heading, used in (("Read from the record in part", True), ("Not used from the record", False)):
        listed = [n for n in notes if n.used is used]
        if listed:
            lines.append(f"\n**{heading}:**")
            lines += [f"- {escape(n.reference)} ({escape(n.label)}): {escape(n.reason)}" for n in listed]
    lines.append("\n**Sources:**")
    titles = {s["id"]: s["title"] for s in kb.sources}
    sections: dict[tuple[str, str], list[int]] = {}
    for locator in all_citations(result):
        sections.setdefault((locator["source"], locator["heading"] or "Introduction"), []).append(locator["paragraph"])
    for (source, heading), paragraphs in sections.items():
        numbers = sorted(set(paragraphs))
        word = "paragraphs" if len(numbers) > 1 else "paragraph"
        lines.append(f"- {source} {titles.get(source, '')}: {heading}, {word} {', '.join(map(str, numbers))}")
    lines.append(f"\n{result['disclaimer']}")
    return "\n".join(lines)


def _suggestions(kb: KnowledgeBase, result: dict[str, Any], basis: list[str], ctx: CardContext) -> list[dict[str, Any]]:
    level_label = result["triage"]["label"]
    assessment = risk_assessment(
        result, patient_id=ctx.patient_id, encounter_id=ctx.encounter_id, basis=basis, now=ctx.now
    )
    record = ("Store the triage result as a RiskAssessment", assessment)
    out = [_suggestion("Record this triage assessment in the chart", [record])]
    for referral in result["referrals"]:
        if referral["to"] == "self_management":
            continue
        requests = service_requests(
            kb, referral, patient_id=ctx.patient_id, encounter_id=ctx.encounter_id, level_label=level_label
        )
        proposals = [(f"Propose: {r['code']['text']}", r) for r in requests]
        out.append(_suggestion(referral_label(kb, referral)[:80], proposals))
    return out


def _suggestion(label: str, actions: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """A suggestion that creates each (description, resource) of `actions`."""
    return {
        "label": label,
        "uuid": str(uuid.uuid4()),
        "actions": [{"type": "create", "description": text, "resource": resource} for text, resource in actions],
    }


def _links(result: dict[str, Any], ctx: CardContext) -> list[dict[str, Any]]:
    links = [
        {"label": f"Rule {rule}", "url": f"{ctx.base_url}/knowledge/rules/{rule}", "type": "absolute"}
        for rule in result["triage"]["rules"]
    ]
    links.append({"label": "All rules and their sources", "url": f"{ctx.base_url}/knowledge", "type": "absolute"})
    return links
