"""gunicorn patches: a response's headers and first body bytes in one write; its own errors as problem+json;
its access log off for good (NoAccessLogger, below); a knowledge base that cannot serve stops start-up with
its reason alone (report_start_up_errors).

gunicorn writes the status line and headers, then the body, in two writes. A worker killed between
them leaves a proxy holding a 200 header with no body: it cannot retry (the header is already on its
way to the client) and the client gets a truncated answer. Holding the header back until the first
body write (or the end of the response) closes that window, so a crashed worker's requests fail
cleanly and nginx retries them on another replica. Installed from deploy/gunicorn.conf.py; tested
against the pinned gunicorn in tests/test_runtime.py.
"""

from __future__ import annotations

import json
import sys
from types import TracebackType
from typing import Any

from gunicorn.glogging import Logger

from service.knowledge.loader import KnowledgeError

# gunicorn's own message quotes the request (a header name, the request line): never sent back.
_DETAIL = "The server refused the request before the service read it: it is not well-formed HTTP or exceeds a limit."


class OneWriteSocket:
    """Wraps a response's socket: the first write (always the header) waits for the next one."""

    __slots__ = ("_head", "_sock")

    def __init__(self, sock: Any):
        self._sock = sock
        self._head: bytes | None = None  # None until the header arrives; b"" once sent

    def sendall(self, data: bytes) -> None:
        if self._head is None:
            self._head = bytes(data)
            return
        if self._head:
            data, self._head = self._head + bytes(data), b""
        self._sock.sendall(data)

    def flush(self) -> None:
        if self._head:
            self._sock.sendall(self._head)
        self._head = b""

    def sendfile(self, *args: Any, **kwargs: Any) -> Any:
        self.flush()
        return self._sock.sendfile(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def install() -> None:
    from gunicorn.http import wsgi

    if getattr(wsgi.Response, "_one_write", False):
        return
    original_init, original_close = wsgi.Response.__init__, wsgi.Response.close

    def __init__(self: Any, req: Any, sock: Any, cfg: Any) -> None:
        original_init(self, req, OneWriteSocket(sock), cfg)

    def close(self: Any) -> None:
        original_close(self)
        self.sock.flush()  # a response with an empty body: the header goes out now

    wsgi.Response.__init__ = __init__
    wsgi.Response.close = close
    wsgi.Response._one_write = True


def write_problem(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's error page (400, 414, 431, 500 ...) as RFC 9457 problem+json, like every other error."""
    from gunicorn import util

    body = json.dumps({"type": "about:blank", "title": reason, "status": status_int, "detail": _DETAIL}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def install_problem_errors() -> None:
    from gunicorn import util

    util.write_error = write_problem


class NoAccessLogger(Logger):
    """gunicorn's logger with its access log off for good (deploy/gunicorn.conf.py's logger_class).

    The app writes its own request line (service/cycle.py). gunicorn's access log is off (accesslog None),
    but because the config sets logconfig_dict, gunicorn still formatted every access-log field of every
    request and handed the record to a logger with no handler: about a tenth of a worker's CPU under
    load (py-spy, bench/profile_notes.md), for a line nobody sees.
    """

    @property
    def access_log_enabled(self) -> bool:
        return False

    def access(self, *args: Any, **kwargs: Any) -> None:
        return None


def report_start_up_errors() -> None:
    """A knowledge base that does not load, or source texts that differ from what it cites, end the master
    with the reason alone (exit status 1), not after gunicorn's call stack.

    With preload_app gunicorn builds the app in the master before any of its hooks runs, so the error
    leaves gunicorn uncaught: Python's excepthook is the one place to report it. Any other error keeps
    its traceback (a bug needs one).
    """
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        if issubclass(kind, KnowledgeError):
            print(f"refusing to start: {error}", file=sys.stderr)
        else:
            previous(kind, error, trace)

    sys.excepthook = hook
