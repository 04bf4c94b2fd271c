"""JSON out with orjson: an answer is encoded in a few microseconds instead of tens.

The engine's answer is already plain data in the response schema's shape, so the routes return it
encoded here instead of running it through marshmallow's dump (tests/test_fastpath.py shows the dump
would return it unchanged). orjson keeps key order and writes UTF-8.
"""

from __future__ import annotations

from typing import Any

import flask
import orjson

from service.engine.answer import Answer


def json_response(data: Any, status: int = 200) -> flask.Response:
    # An engine answer carries its JSON, encoded mostly once per decision (service/engine/answer.py).
    body = data.json() if type(data) is Answer else orjson.dumps(data)
    return flask.Response(body, status=status, mimetype="application/json")


def canonical_json(data: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: byte for byte what json.dumps(sort_keys=True,
    separators=(",", ":"), ensure_ascii=False) gives for JSON data, so fingerprints stay stable."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
