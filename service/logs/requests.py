"""Per request: its id (the caller's if opaque, else a new one), its lines held for one write, and
one request line when it ends; an unhandled error logged by type and frames, never by message."""

from __future__ import annotations

import functools
import os
import random
import re
import time
import traceback

import flask
import structlog

from service.headers import REQUEST_ID_KEY
from service.logs.buffer import hold_lines, release_lines
from service.logs.setup import log

# A caller's X-Request-ID is honoured only as an opaque id: a UUID, or 32 hex digits (nginx's $request_id).
# Free text ("smith-mrn-12345") would be written to every log line of the call, so it is replaced.
_HEX = "[0-9a-fA-F]"
REQUEST_ID = re.compile(rf"^(?:[0-9a-f]{{32}}|{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}})$")
STARTED_KEY = "legraise.started"  # environ key: time.perf_counter() when the request reached the app
_CONVERTER = re.compile(r"<(?:[^<>]*:)?([^<>:]+)>")


@functools.lru_cache(maxsize=1024)  # rules are a fixed set; the log, access check and metrics all ask
def route_template(rule: str) -> str:
    """A URL rule as ROUTE_SCOPES and metric labels name it: converters dropped.

    "/v1/rules/<string(maxlength=64):rule_id>" -> "/v1/rules/<rule_id>".
    """
    return _CONVERTER.sub(r"<\1>", rule)


def init_request_logging(app: flask.Flask) -> None:
    app.before_request(_start_request)
    app.after_request(_finish_request)
    app.teardown_request(_end_request)  # runs for every request, errors included
    app.log_exception = _log_exception  # type: ignore[method-assign]


def _start_request() -> None:
    request = flask.request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
    environ = request.environ
    incoming = environ.get("HTTP_X_REQUEST_ID", "")
    # A new id need only be unique, not secret: random's generator (seeded from the OS, and again in each
    # forked worker) rather than a uuid4's getrandom system call on every request.
    request_id = incoming if REQUEST_ID.match(incoming) else f"{random.getrandbits(128):032x}"
    environ[REQUEST_ID_KEY] = request_id  # service/headers.py sends it back
    environ[STARTED_KEY] = time.perf_counter()
    hold_lines()
    structlog.contextvars.bind_contextvars(request_id=request_id)  # _end_request clears what the last one bound


def _end_request(exc: BaseException | None = None) -> None:
    release_lines()
    structlog.contextvars.clear_contextvars()  # a later line outside a request carries no request id


def _finish_request(response: flask.Response) -> flask.Response:
    request = flask.request._get_current_object()  # type: ignore[attr-defined]
    started = request.environ.get(STARTED_KEY)
    rule = request.url_rule
    log.info(
        "request",
        method=request.method,
        route=route_template(rule.rule) if rule else None,
        status=response.status_code,
        duration_ms=round((time.perf_counter() - started) * 1000, 2) if started else None,
        pid=os.getpid(),  # which gunicorn worker served it
    )
    return response


def _log_exception(exc_info: tuple) -> None:
    exc_type, _, tb = exc_info
    frames = [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_tb(tb)]
    log.error("unhandled_error", error_type=exc_type.__name__ if exc_type else None, frames=frames)
