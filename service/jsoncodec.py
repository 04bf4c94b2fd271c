"""JSON in and out, one way each: strict parsing and canonical encoding. Plain Python: no Flask.

Strict: a document must be unambiguous (no duplicate keys, no NaN or Infinity, UTF-8), or it is
refused. A later duplicate key would silently override a finding, so request bodies, case files, FHIR
resources and JWKS documents are all read through parse_strict_json.
Canonical: sorted keys, no whitespace, UTF-8, for fingerprints and hashes that must stay stable.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

import orjson


class InvalidJSON(json.JSONDecodeError):
    def __init__(self, reason: str):
        super().__init__(reason, "(body)", 0)
        self.reason = reason


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise InvalidJSON("duplicate object key")  # a later duplicate would silently override a finding
    return obj


def _reject_constant(name: str) -> NoReturn:
    raise InvalidJSON("NaN and Infinity are not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400 would otherwise be read as infinity
        raise InvalidJSON("number out of range")
    return number


def parse_strict_json(raw: bytes) -> Any:
    if not raw.strip():
        raise InvalidJSON("empty body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJSON("body is not valid UTF-8") from exc
    try:
        data = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant, parse_float=_finite_float
        )
    except RecursionError as exc:
        raise InvalidJSON("nesting too deep") from exc
    except InvalidJSON:
        raise
    except json.JSONDecodeError as exc:
        raise InvalidJSON("malformed JSON") from exc
    except ValueError as exc:  # json raises a bare ValueError for integers over 4300 digits
        raise InvalidJSON("number too long") from exc
    if "\\u" in text:  # only an escape can make an unpaired surrogate, which no answer could then encode
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidJSON("unpaired surrogate: not valid Unicode") from exc
    return data


def canonical_json(data: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: byte for byte what json.dumps(sort_keys=True,
    separators=(",", ":"), ensure_ascii=False) gives for JSON data, so fingerprints stay stable."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
