"""FHIR R4 resources the service emits: the triage result as a RiskAssessment, referrals as ServiceRequests.

Canonical URLs are the service's own, as stable URNs (the project owns no domain): the code system
named `triage` in the mapping file, and one URN per extension below. README lists them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service.engine.model import KnowledgeBase

OWN_SYSTEM = "urn:uuid:f1e21d72-9cca-44c3-ab7a-94d093d480b6"
EXT_LEVEL = "urn:uuid:b560d7fc-b120-4d99-9ee1-f9a18828f90f"  # valueCoding: the triage level
EXT_RULE = "urn:uuid:e0f8e2d9-7b6f-4203-ae78-ca35e351f1df"  # valueString: a rule that fired
EXT_CITATION = "urn:uuid:d7b581b4-03f3-44ef-bc22-e4956ec7e68a"  # complex: one source locator
EXT_KNOWLEDGE = "urn:uuid:891250ba-1c24-4140-874b-94f59c2d0ed8"  # valueString: knowledge version and hash


def own_code(kind: str, ident: str) -> str:
    return f"{kind}-{ident.replace('_', '-')}"


def citation_extension(locator: dict[str, Any]) -> dict[str, Any]:
    parts = [
        {"url": "source", "valueString": locator["source"]},
        {"url": "section", "valueString": locator["section"]},
        {"url": "paragraph", "valuePositiveInt": locator["paragraph"]},
        {"url": "start", "valueInteger": locator["start"]},
        {"url": "end", "valueInteger": locator["end"]},
        {"url": "sha256", "valueString": locator["sha256"]},
    ]
    return {"url": EXT_CITATION, "extension": parts}


def all_citations(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every citation behind the answer, level first, without repeats."""
    groups = [result["triage"]["citations"]]
    groups += [c["citations"] for key in ("causes", "referrals", "advice") for c in result[key]]
    seen: dict[tuple, dict[str, Any]] = {}
    for group in groups:
        for locator in group:
            seen.setdefault((locator["source"], locator["start"], locator["end"], locator["sha256"]), locator)
    return list(seen.values())


def risk_assessment(
    result: dict[str, Any],
    *,
    patient_id: str,
    encounter_id: str | None,
    basis: list[str],
    now: datetime,
) -> dict[str, Any]:
    triage = result["triage"]
    knowledge = result["knowledge"]
    resource = {
        "resourceType": "RiskAssessment",
        "extension": [
            {
                "url": EXT_LEVEL,
                "valueCoding": {
                    "system": OWN_SYSTEM,
                    "code": own_code("level", triage["level"]),
                    "display": triage["label"],
                },
            },
            {"url": EXT_KNOWLEDGE, "valueString": f"{knowledge['version']} sha256:{knowledge['sha256']}"},
            *({"url": EXT_RULE, "valueString": t["rule"]} for t in result["trace"]),
            *(citation_extension(c) for c in all_citations(result)),
        ],
        # preliminary while unknown findings could still raise the level
        "status": "preliminary" if triage["provisional"] else "final",
        "code": {"coding": [{"system": OWN_SYSTEM, "code": "leg-raise-triage", "display": "Leg-raise triage"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "occurrenceDateTime": now.isoformat(timespec="seconds"),
        "method": {"text": f"Rule-based triage, knowledge {knowledge['version']}"},
        "basis": [{"reference": ref} for ref in basis],
        "prediction": [
            {
                "outcome": {
                    "coding": [{"system": OWN_SYSTEM, "code": own_code("cause", c["id"]), "display": c["name"]}],
                    "text": c["name"],
                },
                "rationale": f"{c['strength']} fit of the findings (score {c['score']}, not a probability); "
                f"rules {', '.join(c['rules'])}",
            }
            for c in result["causes"]
        ],
        "mitigation": triage["action"],
        "note": [{"text": text} for text in answer_notes(result)],
        "encounter": {"reference": f"Encounter/{encounter_id}"} if encounter_id else None,
    }
    return prune(resource)


def answer_notes(result: dict[str, Any]) -> list[str]:
    """What a reader must know besides the level: the scope when not plainly in it, an incomplete
    assessment, contradictions found, and the disclaimer."""
    out = []
    if result["scope"]["population"] != "in":
        out.append(result["scope"]["note"])
    if result["triage"]["incomplete"]:
        # True at any level: a more urgent level found anyway stands, and keeps its own label (policy SP-3).
        out.append("No red-flag question has been answered yet: ask them (they are among the questions still to ask).")
    out += [f"Contradiction: {c['statement']}" for c in result["conflicts"]]
    return [*out, result["disclaimer"]]


def service_requests(
    kb: KnowledgeBase, referral: dict[str, Any], *, patient_id: str, encounter_id: str | None, level_label: str
) -> list[dict[str, Any]]:
    """The referral and each test it calls for, as draft proposals the clinician can accept (names and
    priority from the catalog)."""
    items = [(own_code("referral", referral["to"]), kb.referral_targets[referral["to"]])]
    items += [(own_code("test", t), kb.tests[t]) for t in referral["tests"]]
    out = []
    for code, text in items:
        request: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "proposal",
            "priority": kb.urgencies[referral["urgency"]].priority,
            "code": {"coding": [{"system": OWN_SYSTEM, "code": code, "display": text}], "text": text},
            "subject": {"reference": f"Patient/{patient_id}"},
            "reasonCode": [{"text": f"Leg-raise triage: {level_label}"}],
        }
        if encounter_id:
            request["encounter"] = {"reference": f"Encounter/{encounter_id}"}
        out.append(request)
    return out


def prune(value: Any) -> Any:
    """Drop None, "", [] and {} everywhere: CDS Hooks and FHIR both forbid empty elements."""
    if isinstance(value, dict):
        return {k: p for k, v in value.items() if (p := prune(v)) not in (None, "", [], {})}
    if isinstance(value, list):
        return [p for v in value if (p := prune(v)) not in (None, "", [], {})]
    return value
