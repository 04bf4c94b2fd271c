"""Write a /v1/triage findings object as the FHIR an EHR would hold, and wrap it in CDS Hooks calls.

The encoder reads the bundled mapping file directly (not the service's reader), so a round trip
through the service checks the service's reading of FHIR against the file's meaning.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tests.scenarios import get_path

MAPPING = yaml.safe_load((Path(__file__).resolve().parents[1] / "service/knowledge/fhir_mapping.yaml").read_text())
SYSTEMS = MAPPING["systems"]
OWN = SYSTEMS["triage"]
PATIENT_ID = "pat-1"
SERVICE_URL = "/cds-services/leg-raise-triage"


def _coding(token: str) -> dict[str, str]:
    alias, code = token.split("|")
    return {"system": SYSTEMS[alias], "code": code}


def observation(code_token: str, value: dict[str, Any], *, index: int, when: str | None = None, **extra: Any) -> dict:
    obs = {
        "resourceType": "Observation",
        "id": f"obs-{index}",
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "exam"}]}
        ],
        "code": {"coding": [_coding(code_token)]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": when or datetime.now(UTC).isoformat(timespec="seconds"),
        **value,
    }
    obs.update(extra)
    return obs


def observations_for(findings: dict[str, Any], when: str | None = None) -> list[dict[str, Any]]:
    """One Observation per answered finding (per member for set findings); unknowns are left out."""
    out: list[dict[str, Any]] = []
    for token, spec in MAPPING["observations"].items():
        value = get_path(findings, spec["finding"])
        if value is None or "threshold" in spec:  # measurements (body temperature) are written by the tests using them
            continue
        if "member" in spec:
            if isinstance(value, list):
                out.append(observation(token, {"valueBoolean": spec["member"] in value}, index=len(out), when=when))
        elif "answers" in spec:
            answer = next((a for a, v in spec["answers"].items() if v == value), None)
            if answer is not None:
                out.append(
                    observation(
                        token, {"valueCodeableConcept": {"coding": [_coding(answer)]}}, index=len(out), when=when
                    )
                )
        elif isinstance(value, int) and not isinstance(value, bool):
            out.append(observation(token, {"valueInteger": value}, index=len(out), when=when))
        elif value in ("present", "absent"):
            out.append(observation(token, {"valueBoolean": value == "present"}, index=len(out), when=when))
    return out


def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": r, "search": {"mode": "match"}} for r in resources
        ],
    }


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": PATIENT_ID, "gender": "female", "birthDate": "1970-05-01", **extra}


def hook_call(
    prefetch: dict[str, Any] | None = None, *, hook: str = "patient-view", context: dict | None = None, **extra: Any
) -> dict[str, Any]:
    call: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": context or {"userId": "Practitioner/doc-1", "patientId": PATIENT_ID, "encounterId": "enc-1"},
    }
    if prefetch is not None:
        call["prefetch"] = prefetch
    call.update(extra)
    return call


def call_for(findings: dict[str, Any], conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A patient-view call with every prefetch key filled from the findings."""
    return hook_call(
        {
            "patient": patient(),
            "observations": bundle(observations_for(findings)),
            "conditions": bundle(conditions or []),
            "vitals": bundle([]),
        }
    )


def assessment(card: dict[str, Any]) -> dict[str, Any]:
    """The RiskAssessment a card offers to record."""
    return next(
        a["resource"]
        for s in card["suggestions"]
        for a in s["actions"]
        if a["resource"]["resourceType"] == "RiskAssessment"
    )


def walk(value: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    """Every value in a JSON document with its path, to check for nulls and empty values."""
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from walk(child, f"{path}.{key}")
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from walk(child, f"{path}[{i}]")
