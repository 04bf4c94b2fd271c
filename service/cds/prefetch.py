"""The four states of a prefetch key, and reading from the EHR's FHIR server when data was not sent.

- key with data: a Patient, or a searchset Bundle of Observations / Conditions;
- key null: the EHR has nothing recorded (no resources, which is not the same as normal findings);
- key absent, or an OperationOutcome in its place: read the query from `fhirServer` (allow-listed
  hosts only, with the access token the EHR passed);
- neither possible: DataUnavailable, which the route answers with 412.

`vitals` is optional: sent, it is read like the others; absent from a call without `fhirServer`, it is
not asked for (an EHR registered before the key existed sends three); absent or failed otherwise, it is
read from `fhirServer`, and if that fails too the card names it and what it speaks for stays unknown.
An Observation in both `observations` and `vitals` (the same id) is read once.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from schemas.cds import Prefetch
from service.cds.extract import Gathered, Note
from service.cds.fhir_reader import FhirReader, FhirUnavailable
from service.cds.mapping import OPTIONAL_PREFETCH_KEYS, PREFETCH_KEYS, Mapping

EXPECTED = {"patient": "Patient", "observations": "Observation", "conditions": "Condition", "vitals": "Observation"}
_TOKEN = re.compile(r"\{\{\s*context\.([A-Za-z0-9_]+)\s*\}\}")


class DataUnavailable(Exception):
    """Required data could be had neither from prefetch nor from the FHIR server (answered with 412)."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def fill_template(template: str, context: dict[str, Any]) -> str | None:
    """The query for a template, or None when it needs a context field the hook did not send."""
    if not all(isinstance(context.get(name), str) and context[name] for name in _TOKEN.findall(template)):
        return None
    return _TOKEN.sub(lambda found: quote(context[found[1]], safe=""), template)


def gather(mapping: Mapping, call: dict[str, Any], reader: FhirReader, deadline: float) -> Gathered:
    """The call's data from prefetch, else read from fhirServer; every read ends by `deadline` (monotonic).

    `call` is as schemas.cds.CdsRequest validated it: each prefetch key absent, null, an OperationOutcome
    or the resource its template asks for. What the FHIR server answers is held to the same schema here.
    """
    prefetch = call.get("prefetch") or {}
    access_token = (call.get("fhirAuthorization") or {}).get("access_token")
    out = Gathered()
    for key in PREFETCH_KEYS:
        if key in prefetch and prefetch[key] is None:
            continue  # nothing recorded
        data = prefetch.get(key)
        if data is None or data["resourceType"] == "OperationOutcome":
            if key in OPTIONAL_PREFETCH_KEYS and key not in prefetch and not call.get("fhirServer"):
                continue  # not sent and nowhere to read it: what it speaks for stays unknown (asked on the card)
            try:
                data = _read(mapping, key, call, reader, access_token, deadline)
            except DataUnavailable as exc:
                if key not in OPTIONAL_PREFETCH_KEYS:
                    raise
                out.notes.append(Note(key, "Bundle", f"could not be read ({exc.reason}); its findings stay unknown"))
                continue
        _take(key, data, out)
    return out


def _read(
    mapping: Mapping, key: str, call: dict[str, Any], reader: FhirReader, token: str | None, deadline: float
) -> dict[str, Any]:
    """The key's query read from fhirServer, held to the prefetch schema; DataUnavailable if it cannot be."""
    query = fill_template(mapping.prefetch[key], call["context"])
    if query is None:
        raise DataUnavailable(key, "the hook context lacks a field the query needs")
    try:
        data = reader.read(call.get("fhirServer"), query, token, deadline)
    except FhirUnavailable as exc:
        raise DataUnavailable(key, exc.reason) from None
    if data["resourceType"] == "OperationOutcome" or Prefetch().validate({key: data}):
        raise DataUnavailable(key, "the FHIR server answered with something else")
    return data


def _take(key: str, data: dict[str, Any], out: Gathered) -> None:
    if key == "patient":
        out.patient = data
        return
    expected = EXPECTED[key]
    bucket = out.conditions if key == "conditions" else out.observations
    seen = {r.get("id") for r in bucket if isinstance(r.get("id"), str) and r.get("id")}
    taken = 0
    for index, entry in enumerate(data.get("entry", [])):
        resource = entry.get("resource")
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        search = entry.get("search")
        mode = search.get("mode") if isinstance(search, dict) else None
        if kind == expected and mode in (None, "match"):
            rid = resource.get("id")
            if key == "vitals" and isinstance(rid, str) and rid in seen:
                continue  # also in the exam Bundle: the same record, read once
            bucket.append(resource)
            taken += 1
        elif kind == "OperationOutcome":
            out.notes.append(Note(f"{key} entry {index + 1}", "OperationOutcome", "the EHR reported a problem"))
        elif mode != "include":
            out.notes.append(Note(f"{key} entry {index + 1}", str(kind), f"not a {expected}; not used"))
    if any(isinstance(link, dict) and link.get("relation") == "next" for link in data.get("link", []) or []):
        # Later pages are not read: the templates sort newest first, so the latest records are here.
        out.notes.append(Note(key, "Bundle", f"only the first page ({taken} records) was read", used=True))
