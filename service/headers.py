"""The headers every response carries, added where WSGI hands the response to the server.

Security headers, the knowledge version and the request id go on every response, errors included.
Set one by one on werkzeug's Headers (each call scans and validates the list), they cost more than
the rest of the request cycle put together (bench/profile_notes.md); here they are one list,
built once, extended onto the plain list WSGI passes to start_response. A header a view set itself
(the API docs' own Content-Security-Policy) is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

REQUEST_ID_KEY = "legraise.request_id"  # environ key: the request id service/logs/requests.py chose

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class StandardHeaders:
    """WSGI middleware: `headers` on every response unless it has its own, and X-Request-ID when the
    request was given an id."""

    def __init__(self, wsgi_app: WSGIApp, headers: Mapping[str, str]):
        self.wsgi_app = wsgi_app
        self.headers = list(headers.items())
        self.names = frozenset(name.lower() for name in headers)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            own = {name.lower() for name, _ in headers} & self.names
            headers.extend(self.headers if not own else [h for h in self.headers if h[0].lower() not in own])
            request_id = environ.get(REQUEST_ID_KEY)
            if request_id:
                headers.append(("X-Request-ID", request_id))
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)
