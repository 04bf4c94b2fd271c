"""The CDS services this server offers (discovery) and the one call that evaluates a hook."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.cds.cards import CardContext, triage_card
from service.cds.extract import Extraction, at_age, extract
from service.cds.mapping import Mapping
from service.cds.prefetch import gather
from service.cds.setup import CdsState
from service.engine import evaluate
from service.engine.model import KnowledgeBase

SERVICE_ID = "leg-raise-triage"
TITLE = "Leg-raise and low back triage"
# One id for both hooks: a later order-select answer replaces the patient-view card (spec: stale guidance).
DESCRIPTIONS = {
    "patient-view": (
        "Triage from the exam findings already recorded for the patient (straight leg raise, sensation, "
        "bladder and bowel, saddle numbness, pain, history, hip and function): level, likely causes, "
        "referrals and the questions still to ask, each traced to its source."
    ),
    "order-select": (
        "The same triage when imaging, a referral or treatment is being ordered, so the card reflects the "
        "exam findings recorded during this visit."
    ),
}
USAGE = (
    "Reads exam Observations (category exam), vital signs (body temperature, LOINC) and Conditions coded as "
    "in the service's FHIR mapping (its own code system, LOINC and SNOMED CT codes, or a site's local codes "
    "mapped to it). Findings not recorded are unknown, "
    "never absent: the card lists them as questions. Needs the prefetch, or fhirServer with a token."
)


def discovery(mapping: Mapping) -> dict[str, Any]:
    return {
        "services": [
            {
                "hook": hook,
                "id": SERVICE_ID,
                "title": TITLE,
                "description": description,
                "prefetch": dict(mapping.prefetch),
                "usageRequirements": USAGE,
            }
            for hook, description in DESCRIPTIONS.items()
        ]
    }


@dataclass(frozen=True)
class Answer:
    body: dict[str, Any]  # the CDS response
    request: dict[str, Any] | None = None  # the findings read from FHIR, as a /v1/triage request
    result: dict[str, Any] | None = None  # the engine's answer (None when there is no card)


def answer_hook(
    kb: KnowledgeBase, state: CdsState, call: dict[str, Any], base_url: str, public: bool, now: datetime
) -> Answer:
    """The CDS response for a validated call, with the findings and engine result behind its card.

    Every FHIR read of the call ends within state.fhir_budget seconds; card links point at base_url.
    """
    context = call["context"]
    data = gather(state.mapping, call, state.reader, time.monotonic() + state.fhir_budget)
    found = extract(state.mapping, data, patient_id=context["patientId"], now=now, max_age=state.max_age)
    if not found.request["findings"] and not found.notes:
        return Answer({"cards": []})  # nothing recorded that this service reads: nothing to say
    result = evaluate(kb, found.request)
    if found.straddle is not None:
        found, result = _most_urgent(kb, found, found.straddle.ages, result)
    ctx = CardContext(context["patientId"], context.get("encounterId"), base_url, public, now)
    return Answer({"cards": [triage_card(kb, result, found.notes, found.used, ctx)]}, found.request, result)


def _most_urgent(
    kb: KnowledgeBase, found: Extraction, ages: tuple[int, ...], result: dict[str, Any]
) -> tuple[Extraction, dict[str, Any]]:
    """For a partial birthDate whose possible ages straddle a threshold (`ages`, one for each side): the
    extraction and answer at the age giving the most urgent level (the youngest such) when they differ;
    else `found` and `result` as they are, the age unknown and asked for. The engine is not changed."""
    tried = [(chosen, evaluate(kb, chosen.request)) for chosen in (at_age(found, age) for age in ages)]
    ranks = [kb.levels[answer["triage"]["level"]].rank for _, answer in tried]
    return (found, result) if len(set(ranks)) == 1 else tried[ranks.index(min(ranks))]
