"""Turn validated request findings into engine facts: one value per finding path, None when unknown."""

from __future__ import annotations

from typing import Any

from service.engine.logic import Facts, PartialSet
from service.engine.model import Finding

SENSATION_STATUS = "findings.sensation.status"
SENSATION_AREAS = "findings.sensation.areas"


def build_facts(request: dict[str, Any], findings: dict[str, Finding]) -> Facts:
    """Omitted and 'unknown' values become None: unknown is never read as absent.

    A set finding is a list (complete) or, from the FHIR adapter only, {"present": [...], "absent": [...]}
    where every member not listed is unknown.
    """
    facts: Facts = {}
    for path, finding in findings.items():
        value = _lookup(request, path)
        if value is None or (not isinstance(value, (list, dict)) and value in finding.unknown):
            facts[path] = None
        elif finding.kind == "set" and isinstance(value, dict):
            facts[path] = PartialSet(frozenset(value["present"]), frozenset(value["absent"]))
        elif finding.kind == "set":
            facts[path] = frozenset(value)
        else:
            facts[path] = value
    facts[SENSATION_AREAS] = sensation_areas(facts.get(SENSATION_STATUS), facts.get(SENSATION_AREAS))
    return facts


def sensation_areas(status: str | None, areas: frozenset | PartialSet | None) -> frozenset | PartialSet | None:
    # The areas list says where sensation is abnormal. With normal sensation there are none;
    # with abnormal or unknown sensation, an empty or missing list means "not yet known where".
    if status == "normal":
        return frozenset()
    if not areas:
        return None
    return areas


def _lookup(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node
