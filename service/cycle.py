"""What every request gets, in one pass around the Flask app (WSGI middleware).

- An id: the caller's X-Request-ID if it is opaque, else a new one; bound to each of the request's log
  lines and sent back in X-Request-ID.
- Its log lines held and written in one write when it ends, the last of them one `request` line.
- Its metrics: a count by route template, method and status, and its latency by route and method.
- The standard response headers (security headers, the knowledge version) on every response, errors
  included, unless the view set its own (the API docs' Content-Security-Policy).

As Flask hooks these were four calls through Flask's hook dispatch and context proxies per request, and
werkzeug's header methods scan and validate the whole list on every set: together they cost more than
the rest of the request cycle (bench/profile_notes.md). Here they are plain operations on the WSGI
environ and the header list that WSGI hands to the server.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from service.logs.buffer import hold_lines, release_lines
from service.logs.requests import REQUEST_ID_KEY, request_id_for, route_template
from service.logs.setup import log
from service.metrics import record_request

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class RequestCycle:
    """Wraps `wsgi_app`; `headers` go on every response that has none of the same name."""

    def __init__(self, wsgi_app: WSGIApp, headers: Mapping[str, str]) -> None:
        self.wsgi_app = wsgi_app
        self.headers = list(headers.items())
        self.names = frozenset(name.lower() for name in headers)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = environ[REQUEST_ID_KEY] = request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
        hold_lines()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status, route = 0, None

        def start(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal status, route
            status, route = int(line[:3]), route_of(environ)
            own = {name.lower() for name, _ in headers} & self.names
            headers.extend(self.headers if not own else [h for h in self.headers if h[0].lower() not in own])
            headers.append(("X-Request-ID", request_id))
            return start_response(line, headers, exc_info)

        try:
            body = self.wsgi_app(environ, start)
            if status:  # else the app raised: it logged the error itself
                finished(environ["REQUEST_METHOD"], route, status, time.perf_counter() - started)
            return body
        finally:
            release_lines()
            structlog.contextvars.clear_contextvars()  # a later line outside a request carries no request id


def route_of(environ: dict[str, Any]) -> str | None:
    """The route template of the request being answered: Flask's request object is in the environ
    (werkzeug's populate_request) until its context ends, after the response has started."""
    request = environ.get("werkzeug.request")
    rule = request.url_rule if request is not None else None
    return route_template(rule.rule) if rule else None


def finished(method: str, route: str | None, status: int, seconds: float) -> None:
    """The request line and the request's metrics."""
    duration_ms = round(seconds * 1000, 2)
    log.info("request", method=method, route=route, status=status, duration_ms=duration_ms, pid=os.getpid())
    record_request(route, method, status, seconds)
