"""Helpers to write clinical scenarios as a complete exam plus the findings that differ."""

import copy
from typing import Any

# Every finding answered and normal: no red flag is unknown, so the answer is not provisional.
ALL_CLEAR: dict[str, Any] = {
    "slr": {"result": "normal", "side": "left"},
    "sensation": {"status": "normal"},
    "saddle_numbness": "absent",
    "bladder": "normal",
    "bowel": "normal",
    "pain": {"locations": [], "severity": 0, "unrelenting": "absent", "night": "absent"},
    "history": {
        "onset": "gradual",
        "progression": "stable",
        "trauma": "absent",
        "activity_at_onset": "other",
        "prolonged_sitting": "absent",
        "recent_immobility": "absent",
        "cancer": "absent",
    },
    "systemic": {"fever": "absent", "weight_loss": "absent"},
    "hip": {
        "clicking": "absent",
        "catching_or_locking": "absent",
        "range_reduced": "absent",
        "front_tenderness": "absent",
    },
    "function": {"walking_affected": "absent", "back_arches_on_lift": "absent"},
    "other_weakness": "absent",
}
ADULT = {"age": 40}  # the patient block of an adult in the intended population, for final answers


def set_path(findings: dict[str, Any], path: str, value: Any) -> None:
    """Set a finding by dotted path (with or without the "findings." prefix); None removes it."""
    put(findings, path.removeprefix("findings."), value)


def get_path(findings: dict[str, Any], path: str) -> Any:
    return fetch(findings, path.removeprefix("findings."))


def exam(changes: dict[str, Any] | None = None, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """ALL_CLEAR (or base) with dotted-path changes; a value of None removes the finding (unknown)."""
    findings = copy.deepcopy(ALL_CLEAR if base is None else base)
    for path, value in (changes or {}).items():
        set_path(findings, path, value)
    return findings


def fired(result: dict[str, Any]) -> set[str]:
    return {t["rule"] for t in result["trace"]}


def cause_ids(result: dict[str, Any]) -> list[str]:
    return [c["id"] for c in result["causes"]]


def referral(result: dict[str, Any], to: str) -> dict[str, Any] | None:
    return next((r for r in result["referrals"] if r["to"] == to), None)


def put(request: dict[str, Any], path: str, value: Any) -> None:
    """Set a value in a whole request by its full dotted path (findings.… or patient.…); None removes it."""
    *parents, leaf = path.split(".")
    node = request
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value


def fetch(request: dict[str, Any], path: str) -> Any:
    """A value of a whole request by its full dotted path; None when absent."""
    node: Any = request
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node
