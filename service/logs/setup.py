"""Logging configuration, applied by each app as it is created: structlog's stock processors, then
JSON lines through the request's write buffer; stdlib records (werkzeug, urllib3, gunicorn) in the
same shape on the same stream; gunicorn's own records redacted (deploy/gunicorn.conf.py installs the filter)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog
from structlog.processors import NAME_TO_LEVEL

from service.logs.buffer import JsonLineLogger

LEVELS = {name: logging.getLevelName(name) for name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")}
log = structlog.get_logger("service")


def level_number(name: str) -> int:
    """The logging level LOG_LEVEL names, in any case, or a ValueError naming the choices."""
    level = name.upper()
    if level not in LEVELS:
        raise ValueError(f"LOG_LEVEL must be one of {', '.join(LEVELS)}, not {level!r}")
    return LEVELS[level]


def drop_exc_info(logger: object, name: str, event: dict[str, Any]) -> dict[str, Any]:
    # No exception text or locals in any line: messages and locals can carry request values.
    event.pop("exc_info", None)
    event.pop("exception", None)
    return event


STAMP = (
    structlog.contextvars.merge_contextvars,  # the request id and the caller, bound per request
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    drop_exc_info,
)


def json_formatter() -> logging.Formatter:
    """stdlib records as the service's own JSON lines: for the app's handler and gunicorn's logconfig."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=list(STAMP),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(serializer=lambda data, **_: orjson.dumps(data).decode()),
        ],
    )


_level = logging.INFO  # the process's: set by configure_logging


def drop_below_level(logger: object, name: str, event: dict[str, Any]) -> dict[str, Any]:
    # The level is read per event rather than built into each logger, so loggers can be cached (none
    # is assembled per event) and a later app's level still reaches loggers already in use.
    if NAME_TO_LEVEL.get(name, logging.CRITICAL) < _level:
        raise structlog.DropEvent
    return event


def configure_logging(level: str = "INFO") -> None:
    """Apply LOG_LEVEL (any case) for the service's events and stdlib's records. Each app applies its
    own when created, so the last app created sets the process's level."""
    global _level
    number = _level = level_number(level)
    structlog.configure(
        processors=[drop_below_level, *STAMP, structlog.processors.JSONRenderer(serializer=orjson.dumps)],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=JsonLineLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(number)
    logging.getLogger("werkzeug").setLevel("WARNING")
    # urllib3 logs request lines (FHIR paths and queries name the patient) at DEBUG.
    logging.getLogger("urllib3").setLevel("WARNING")


class GunicornRedactor(logging.Filter):
    """gunicorn's messages about bad requests quote the request line (query string included): keep
    what happened, drop what the client sent."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Invalid request from ip="):
            record.msg, record.args = message.split(":", 1)[0] + ": (request withheld)", ()
        elif message.startswith("Error handling request"):
            record.msg, record.args = "Error handling request (request withheld)", ()
        record.exc_info, record.exc_text = None, None
        return True
