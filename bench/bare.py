"""Bare Flask: the floor under the service's request cycle, served by the same gunicorn and config.

POST /bench/bare parses the JSON body with Flask's own `request.get_json()` and answers the exact bytes
of the triage answer to that body, canned by the bench runner (bench/app.py's `canned_answers()`) in a
JSON file named by BENCH_CANNED_ANSWERS, read once here. Flask and the standard library only: no
service code, so the gap to it is what the service's request cycle costs. GET /readyz answers 200
(the harness waits for it). Never deployed.

    BENCH_CANNED_ANSWERS=answers.json gunicorn -c deploy/gunicorn.conf.py 'bench.bare:create_bare_app()'
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import flask

BARE = "/bench/bare"
ANSWERS_ENV = "BENCH_CANNED_ANSWERS"


def write_answers(path: Path, answers: dict[bytes, bytes], fallback: bytes) -> Path:
    """The file the app reads: bytes as latin-1 text (one character per byte), JSON-escaped."""
    text = {body.decode("latin-1"): answer.decode("latin-1") for body, answer in answers.items()}
    path.write_text(json.dumps({"answers": text, "fallback": fallback.decode("latin-1")}), encoding="ascii")
    return path


def create_bare_app() -> flask.Flask:
    canned = json.loads(Path(os.environ[ANSWERS_ENV]).read_text(encoding="ascii"))
    answers = {body.encode("latin-1"): answer.encode("latin-1") for body, answer in canned["answers"].items()}
    fallback = canned["fallback"].encode("latin-1")
    app = flask.Flask(__name__)

    @app.post(BARE)
    def bare() -> flask.Response:
        flask.request.get_json()
        body = flask.request.get_data()  # the bytes get_json() parsed, cached
        return flask.Response(answers.get(body, fallback), mimetype="application/json")

    @app.get("/readyz")
    def readyz() -> flask.Response:
        return flask.Response(b'{"status":"ready"}', mimetype="application/json")

    return app
