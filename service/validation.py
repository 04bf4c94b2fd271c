"""Request bodies accepted by a JSON Schema validator built from the app's own OpenAPI components.

marshmallow is the contract and writes every 422; this is how a valid body skips it. A Draft 4
validator (jsonschema-rs) over the published components accepts exactly what the schema's load would
return unchanged (tests/test_validation.py checks the two agree on generated bodies); anything it
refuses goes to marshmallow, whose load refuses it with per-field messages. Draft 4 because it tells
integers from floats as marshmallow's strict Integer does: later drafts take 5.0 as an integer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jsonschema_rs
import marshmallow

ACCEPTORS = "triage_acceptors"  # app.extensions key: schema class name -> is_valid
Acceptors = Mapping[str, Callable[[Any], bool]]
# Request schemas whose load returns the body unchanged (no defaults, renames or post-load hooks):
# for these, a body the JSON Schema accepts can be used as it is.
UNCHANGED_BY_LOAD = ("TriageRequest",)


def build_acceptors(spec: Mapping[str, Any]) -> dict[str, Callable[[Any], bool]]:
    """is_valid for each schema in UNCHANGED_BY_LOAD, from an OpenAPI document (as a dict)."""
    components = {"schemas": spec["components"]["schemas"]}
    return {
        name: jsonschema_rs.Draft4Validator({"$ref": f"#/components/schemas/{name}", "components": components}).is_valid
        for name in UNCHANGED_BY_LOAD
    }


def load(schema: marshmallow.Schema, data: Any, acceptors: Acceptors) -> Any:
    """What schema.load(data) returns: `data` itself when the schema's acceptor takes it, else
    marshmallow's load (unknown keys refused), whose ValidationError carries the 422's messages."""
    accepts = acceptors.get(type(schema).__name__)
    if accepts is not None and accepts(data):
        return data
    return schema.load(data, unknown=marshmallow.RAISE)
