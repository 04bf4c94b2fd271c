"""Per request: its id (the caller's if opaque, else a new one) and its route template, as the log,
access check and metrics name it; an unhandled error logged by type and frames, never by message.
service/cycle.py holds the lines for one write and logs the request line."""

from __future__ import annotations

import functools
import random
import re
import traceback

import flask

from service.logs.setup import log

# A caller's X-Request-ID is honoured only as an opaque id: a UUID, or 32 hex digits (nginx's $request_id).
# Free text ("smith-mrn-12345") would be written to every log line of the call, so it is replaced.
_HEX = "[0-9a-fA-F]"
REQUEST_ID = re.compile(rf"^(?:[0-9a-f]{{32}}|{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}})$")
REQUEST_ID_KEY = "legraise.request_id"  # environ key: the id service/cycle.py gave the request
_CONVERTER = re.compile(r"<(?:[^<>]*:)?([^<>:]+)>")


@functools.lru_cache(maxsize=1024)  # rules are a fixed set; the log, access check and metrics all ask
def route_template(rule: str) -> str:
    """A URL rule as ROUTE_SCOPES and metric labels name it: converters dropped.

    "/v1/rules/<string(maxlength=64):rule_id>" -> "/v1/rules/<rule_id>".
    """
    return _CONVERTER.sub(r"<\1>", rule)


def request_id_for(incoming: str) -> str:
    """The caller's id if it is opaque, else a new one. A new id need only be unique, not secret: random's
    generator (seeded from the OS, and again in each forked worker), not a uuid4's system call per request.
    Bandit waiver (B311): the id correlates log lines and is sent back to the caller; it guards nothing."""
    if REQUEST_ID.match(incoming):
        return incoming
    return f"{random.getrandbits(128):032x}"  # nosec B311 # unique, not secret: see the waiver above


def init_request_logging(app: flask.Flask) -> None:
    """An unhandled error logged by type and frames (service/cycle.py logs every request)."""
    app.log_exception = _log_exception  # type: ignore[method-assign]


def _log_exception(exc_info: tuple) -> None:
    exc_type, _, tb = exc_info
    frames = [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_tb(tb)]
    log.error("unhandled_error", error_type=exc_type.__name__ if exc_type else None, frames=frames)
