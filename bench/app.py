"""The benchmark app: the service as deployed plus a control endpoint, served by the same gunicorn.

POST /bench/control does only what every call must: the same request cycle, access check, logging,
metrics and security headers, parse the JSON body, then answer with canned bytes the size of the
triage answer to that body (worked out once at start). The difference between it and
POST /v1/triage is what validation, the engine, encoding and the audit cost. Never deployed.

    gunicorn -c deploy/gunicorn.conf.py 'bench.app:create_bench_app()'
"""

from __future__ import annotations

from typing import Any

import flask
import orjson

from bench.workload import scenario_mix, typical_request
from service import create_app
from service.auth.guard import ROUTE_SCOPES
from service.engine import evaluate
from service.jsoncodec import parse_strict_json
from service.knowledge import load_knowledge
from service.parsing import read_whole_body

CONTROL = "/bench/control"


def canned_answers() -> dict[bytes, bytes]:
    """Request body as the load generator sends it -> bytes of the triage answer to it."""
    kb = load_knowledge()
    bodies = [*scenario_mix(), typical_request()]
    return {wire(b): wire(evaluate(kb, b)) for b in bodies}


def wire(data: object) -> bytes:
    """JSON as the load generator sends it and as the service answers (orjson: compact, UTF-8)."""
    return orjson.dumps(data)


def create_bench_app(config: dict[str, Any] | None = None) -> flask.Flask:
    ROUTE_SCOPES[CONTROL] = "triage"  # the same API key check as /v1/triage (bench/http.py sends the key)
    app = create_app(config)
    answers = canned_answers()
    fallback = answers[wire(typical_request())]

    @app.post(CONTROL)
    def control() -> flask.Response:
        body = read_whole_body(flask.request)
        parse_strict_json(body)  # the same strict parser /v1/triage uses
        return flask.Response(answers.get(body, fallback), mimetype="application/json")

    return app
