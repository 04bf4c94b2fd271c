"""A request's log lines, written together in one write when it ends.

Every write releases the GIL, and under load each release costs a hand-over to another thread and
back: a line per event made the audit line the dearest part of a call (bench/profile_notes.md). One
write per request also keeps a request's lines together, never interleaved with another's. Outside a
request a line is written at once.
"""

from __future__ import annotations

import contextvars
import sys

_request_lines: contextvars.ContextVar[list[bytes] | None] = contextvars.ContextVar("request_lines", default=None)


class JsonLineLogger:
    """structlog's last stop: each rendered event one line on whatever sys.stdout is now."""

    def __init__(self, *args: object) -> None:
        pass

    def msg(self, message: bytes) -> None:
        pending = _request_lines.get()
        if pending is None:
            write(message + b"\n")
        else:
            pending.append(message)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def hold_lines() -> None:
    """Keep this request's lines until release_lines (anything an earlier request left is written first)."""
    release_lines()
    _request_lines.set([])


def release_lines() -> None:
    """Write the lines held so far, in one write, and stop holding."""
    pending = _request_lines.get()
    _request_lines.set(None)
    if pending:
        write(b"".join(line + b"\n" for line in pending))


def write(data: bytes) -> None:
    """Write log lines to whatever sys.stdout is now (gunicorn's workers and tests swap it)."""
    stream = sys.stdout
    stream.buffer.write(data)
    stream.flush()
