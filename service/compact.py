"""Compact answers on request: each citation once per answer (or batch), cited items naming it by id.

A client asks with the request header `Prefer: citations=compact` (RFC 7240). Each cited item's
`citations` then lists citation ids, and the top-level `citations` object maps each id to the citation
as the default answer shows it but for the `id`, which is its key, once. The default answer is rebuilt
by replacing every id with `{"id": id, **entry}`. In a batch, the answers' ids all point into one map
at the batch's top level. A response that applied the preference says so in `Preference-Applied`; any
other preference is ignored, as RFC 7240 asks, and the answer then has the default shape. Plain
Python: no Flask, no patient data kept.
"""

from __future__ import annotations

from typing import Any

PREFERENCE = "citations=compact"  # as the request's Prefer header carries it, and Preference-Applied echoes it


def wants_compact(prefer: str | None) -> bool:
    """Whether a Prefer header value asks for compact citations (token and value case-insensitive,
    optionally quoted, with other preferences and parameters beside it)."""
    if not prefer:
        return False
    for preference in prefer.split(","):
        name, _, value = preference.split(";", 1)[0].partition("=")
        if name.strip().lower() == "citations" and value.strip().strip('"').lower() == "compact":
            return True
    return False


def compact_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """A POST /v1/triage answer with each citation once, in the top-level `citations` map."""
    cited: dict[str, dict[str, Any]] = {}
    return {**by_id(answer, cited), "citations": cited}


def compact_batch(body: dict[str, Any]) -> dict[str, Any]:
    """A batch response whose answers name their citations by id, all in one map at the top level."""
    cited: dict[str, dict[str, Any]] = {}
    results = [
        {**result, "answer": by_id(result["answer"], cited)} if "answer" in result else result
        for result in body["results"]
    ]
    return {**body, "results": results, "citations": cited}


def by_id(answer: dict[str, Any], cited: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The answer with every cited item's citations replaced by their ids, each added to `cited`.

    Cited items are the answer's top-level objects (triage, scope) and the items of its top-level
    lists (causes, referrals, advice, conflicts) that have a `citations` list."""
    out: dict[str, Any] = {}
    for key, value in answer.items():
        if isinstance(value, dict):
            out[key] = _item(value, cited)
        elif isinstance(value, list):
            out[key] = [_item(item, cited) if isinstance(item, dict) else item for item in value]
        else:
            out[key] = value
    return out


def _item(item: dict[str, Any], cited: dict[str, dict[str, Any]]) -> dict[str, Any]:
    citations = item.get("citations")
    if not isinstance(citations, list):
        return item
    ids = []
    for citation in citations:
        cid = citation["id"]
        if cid not in cited:
            cited[cid] = {key: value for key, value in citation.items() if key != "id"}  # the id is its key
        ids.append(cid)
    return {**item, "citations": ids}
