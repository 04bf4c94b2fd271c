"""The answer of an evaluation: read-only plain data that also carries its own JSON.

Most of an answer is shared with every answer drawn from the same verdicts (triage.Decision), and
encoding those parts again on every call cost more than the evaluation. So a decision encodes its
parts once, a trace is encoded once per decision and values, and an answer's JSON is those bytes
joined: byte for byte what orjson.dumps(answer) writes (tests/test_engine_equivalence.py).
"""

from __future__ import annotations

from typing import Any

import orjson

from service.engine.frozen import FrozenDict

BEFORE_TRACE = ("triage", "scope", "causes", "referrals", "advice", "missing", "conflicts")  # an answer's keys,
AFTER_TRACE = ("knowledge", "disclaimer")  # in order, around "trace"


class Answer(FrozenDict):
    """An answer: a read-only dict, plus `json()`, its encoding, and `rules`, the ids of the rules in
    its trace in the trace's order (what the audit line lists), shared read-only like the trace."""

    __slots__ = ("_json", "rules")

    def __init__(self, data: dict[str, Any], json_parts: tuple[bytes, ...], rules: list[str]) -> None:
        dict.__init__(self, data)
        self._json = json_parts
        self.rules = rules

    def json(self) -> bytes:
        return b"".join(self._json)


def encode_before_trace(parts: dict[str, Any]) -> bytes:
    """The JSON of an answer up to the trace's value: `{"triage":...,"missing":...,"trace":`."""
    if tuple(parts) != BEFORE_TRACE:
        raise ValueError(f"expected the keys {BEFORE_TRACE}")
    return orjson.dumps(parts)[:-1] + b',"trace":'


def encode_after_trace(parts: dict[str, Any]) -> bytes:
    """The JSON of an answer after the trace's value: `,"knowledge":...,"disclaimer":...}`."""
    if tuple(parts) != AFTER_TRACE:
        raise ValueError(f"expected the keys {AFTER_TRACE}")
    return b"," + orjson.dumps(parts)[1:]
