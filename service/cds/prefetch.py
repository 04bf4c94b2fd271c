"""The four states of a prefetch key, and reading from the EHR's FHIR server when data was not sent.

- key with data: a Patient, or a searchset Bundle of Observations / Conditions;
- key null: the EHR has nothing recorded (no resources, which is not the same as normal findings);
- key absent, or an OperationOutcome in its place: read the query from `fhirServer` (allow-listed
  hosts only, with the access token the EHR passed);
- neither possible: DataUnavailable, which the route answers with 412.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from schemas.cds import Prefetch
from service.cds.extract import Gathered, Note
from service.cds.fhir_reader import FhirReader, FhirUnavailable
from service.cds.mapping import PREFETCH_KEYS, Mapping

EXPECTED = {"patient": "Patient", "observations": "Observation", "conditions": "Condition"}
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
    context, prefetch = call["context"], call.get("prefetch") or {}
    access_token = (call.get("fhirAuthorization") or {}).get("access_token")
    out = Gathered()
    for key in PREFETCH_KEYS:
        if key in prefetch and prefetch[key] is None:
            continue  # nothing recorded
        data = prefetch.get(key)
        if data is None or data["resourceType"] == "OperationOutcome":
            query = fill_template(mapping.prefetch[key], context)
            if query is None:
                raise DataUnavailable(key, "the hook context lacks a field the query needs")
            try:
                data = reader.read(call.get("fhirServer"), query, access_token, deadline)
            except FhirUnavailable as exc:
                raise DataUnavailable(key, exc.reason) from None
            if data["resourceType"] == "OperationOutcome" or Prefetch().validate({key: data}):
                raise DataUnavailable(key, "the FHIR server answered with something else")
        _take(key, data, out)
    return out


def _take(key: str, data: dict[str, Any], out: Gathered) -> None:
    if key == "patient":
        out.patient = data
        return
    expected = EXPECTED[key]
    bucket = out.observations if key == "observations" else out.conditions
    for index, entry in enumerate(data.get("entry", [])):
        resource = entry.get("resource")
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        search = entry.get("search")
        mode = search.get("mode") if isinstance(search, dict) else None
        if kind == expected and mode in (None, "match"):
            bucket.append(resource)
        elif kind == "OperationOutcome":
            out.notes.append(Note(f"{key} entry {index + 1}", "OperationOutcome", "the EHR reported a problem"))
        elif mode != "include":
            out.notes.append(Note(f"{key} entry {index + 1}", str(kind), f"not a {expected}; not used"))
    if any(isinstance(link, dict) and link.get("relation") == "next" for link in data.get("link", []) or []):
        # Later pages are not read: the templates sort newest first, so the latest records are here.
        out.notes.append(Note(key, "Bundle", f"only the first page ({len(bucket)} records) was read"))
