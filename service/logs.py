"""JSON logs through structlog. Events carry ids, counts and timings only, never request content."""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import re
import sys
import time
import traceback
import uuid

import flask
import orjson
import structlog

# A caller's X-Request-ID is honoured only as an opaque id: a UUID, or 32 hex digits (nginx's $request_id).
# Free text ("smith-mrn-12345") would be written to every log line of the call, so it is replaced.
_HEX = "[0-9a-fA-F]"
REQUEST_ID = re.compile(rf"^(?:[0-9a-f]{{32}}|{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}})$")
_CONVERTER = re.compile(r"<(?:[^<>]*:)?([^<>:]+)>")


@functools.lru_cache(maxsize=1024)  # rules are a fixed set; the log, access check and metrics all ask
def route_template(rule: str) -> str:
    """A URL rule as ROUTE_SCOPES and metric labels name it: converters dropped.

    "/v1/rules/<string(maxlength=64):rule_id>" -> "/v1/rules/<rule_id>".
    """
    return _CONVERTER.sub(r"<\1>", rule)


LEVELS = {name: logging.getLevelName(name) for name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")}
_configured = False
_captured: list[dict] | None = None
_level = logging.INFO  # the configured level, for events logged without structlog's filtering logger


def level_number(name: str) -> int:
    """The logging level LOG_LEVEL names, in any case, or a ValueError naming the choices."""
    level = name.upper()
    if level not in LEVELS:
        raise ValueError(f"LOG_LEVEL must be one of {', '.join(LEVELS)}, not {level!r}")
    return LEVELS[level]


def configure_logging(level: str = "INFO") -> None:
    """The service's own events go straight from structlog to stdout as JSON lines, without stdlib
    logging: a decision's audit event costs about 10 µs instead of 50. Other libraries' stdlib logs
    (werkzeug, urllib3) go to the same stream in the same JSON shape."""
    global _configured, _level
    number = level_number(level)  # LOG_LEVEL=info is as good as INFO (gunicorn.conf.py lowercases it)
    if _configured:
        return
    _configured, _level = True, number
    structlog.configure(
        # No exception text or locals: messages and locals can carry request values.
        processors=[_stamp_own_event, structlog.processors.JSONRenderer(serializer=orjson.dumps)],
        wrapper_class=structlog.make_filtering_bound_logger(_level),
        logger_factory=JsonLineLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[stamp],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                drop_exc_info,
                structlog.processors.JSONRenderer(serializer=lambda data, **_: orjson.dumps(data).decode()),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(number)  # the number: stdlib knows no lower-case level names
    logging.getLogger("werkzeug").setLevel("WARNING")
    # urllib3 logs request lines (FHIR paths and queries name the patient) at DEBUG.
    logging.getLogger("urllib3").setLevel("WARNING")


# What every line of a request carries (its id, the caller once known): bound at its start.
_request_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("log_context", default=None)
_LEVEL_OF_METHOD = {"warn": "warning", "exception": "error"}  # as structlog's add_log_level names them


def bind_request_context(**fields: str) -> None:
    """Add fields to every later line of this request (or of this context, outside one)."""
    _request_context.set({**(_request_context.get() or {}), **fields})


def stamp(logger: object, method_name: str, event: dict) -> dict:
    """The request's context, the level and a UTC ISO timestamp, as structlog's merge_contextvars,
    add_log_level and TimeStamper(fmt="iso", utc=True) add them, in one step: each processor is one
    more call on every event, and merge_contextvars walks every context variable of the thread."""
    context = _request_context.get()
    if context:
        for key, value in context.items():
            event.setdefault(key, value)
    event["level"] = _LEVEL_OF_METHOD.get(method_name, method_name)
    event["timestamp"] = utc_timestamp()
    return event


_this_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def utc_timestamp() -> str:
    """Now, in UTC, ISO 8601 to the microsecond: "2026-12-02T06:45:25.123456Z". The date and time
    of day are formatted once a second; datetime's isoformat took a third of an event's cost."""
    global _this_second
    second, micro = divmod(int(time.time() * 1_000_000), 1_000_000)
    cached = _this_second
    if cached[0] != second:
        cached = _this_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{micro:06d}Z"


def _stamp_own_event(logger: object, method_name: str, event: dict) -> dict:
    event = stamp(logger, method_name, event)
    event.pop("exc_info", None)  # drop_exc_info, inline: this runs for every event
    event.pop("exception", None)
    if _captured is not None:
        _captured.append(dict(event))
    return event


# The lines a request has logged so far, written together when it ends (see JsonLineLogger).
_request_lines: contextvars.ContextVar[list[bytes] | None] = contextvars.ContextVar("request_lines", default=None)


class JsonLineLogger:
    """structlog's last stop: each rendered event one line on whatever sys.stdout is now.

    Outside a request a line is written at once. Within one, its lines (the audit event, the request
    line, any error) are written together in one write when the request ends, before gunicorn sends
    the response: every write releases the GIL, and under load each release costs a hand-over to
    another thread and back, which an extra line per decision made the dearest part of a call. One
    write per request also keeps a request's lines together and never interleaved with others'.
    """

    def __init__(self, *args: object) -> None:
        pass

    def msg(self, message: bytes) -> None:
        _line(message)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _line(message: bytes) -> None:
    pending = _request_lines.get()
    if pending is not None:
        pending.append(message)
        return
    _write(message + b"\n")


def info_event(event: str, fields: dict) -> None:
    """`log.info(event, **fields)` in the same steps (the level's filter, the stamping processor,
    orjson, the request's lines) and to the same bytes, without structlog's bound-logger dispatch:
    for the audit event, logged once per decision (a batch logs a hundred), where the dispatch was
    half the event's cost, about 6 µs of 11. Takes `fields` over. Values must be JSON data."""
    if _level > logging.INFO:
        return
    fields["event"] = event
    _line(orjson.dumps(_stamp_own_event(None, "info", fields)))


def _write(data: bytes) -> None:
    stream = sys.stdout
    stream.buffer.write(data)
    stream.flush()


def _flush_request_lines(exc: BaseException | None = None) -> None:
    pending = _request_lines.get()
    _request_lines.set(None)
    if pending:
        _write(b"".join(line + b"\n" for line in pending))


def capture_events(into: list[dict] | None) -> None:
    """Also hand every event, before rendering, to `into` (None stops). For tests and tools that need
    the events themselves rather than the JSON lines."""
    global _captured
    _captured = into


class GunicornRedactor(logging.Filter):
    """gunicorn's own messages about bad requests quote the request line (query string included):
    keep what happened, drop what the client sent."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Invalid request from ip="):
            record.msg, record.args = message.split(":", 1)[0] + ": (request withheld)", ()
        elif message.startswith("Error handling request"):
            record.msg, record.args = "Error handling request (request withheld)", ()
        record.exc_info, record.exc_text = None, None
        return True


def drop_exc_info(logger: object, name: str, event: dict) -> dict:
    event.pop("exc_info", None)
    event.pop("exception", None)
    return event


log = structlog.get_logger("service")


def init_request_logging(app: flask.Flask) -> None:
    app.before_request(_start_request)
    app.after_request(_finish_request)
    app.teardown_request(_flush_request_lines)  # runs for every request, errors included
    app.log_exception = _log_exception  # type: ignore[method-assign]


def _start_request() -> None:
    incoming = flask.request.headers.get("X-Request-ID", "")
    request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
    flask.g.request_id = request_id
    flask.g.started = time.perf_counter()
    _flush_request_lines()  # nothing of an earlier request waits behind this one
    _request_lines.set([])
    _request_context.set({"request_id": request_id})


def _finish_request(response: flask.Response) -> flask.Response:
    request_id = flask.g.get("request_id")
    if request_id:
        response.headers["X-Request-ID"] = request_id
    started = flask.g.get("started")
    rule = flask.request.url_rule
    log.info(
        "request",
        method=flask.request.method,
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
