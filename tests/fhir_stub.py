"""A FHIR server stub on 127.0.0.1 for tests: canned responses by path and query, every request recorded.

    def test_something(fhir_stub):
        fhir_stub.add("Patient/123", {"resourceType": "Patient", "id": "123"})
        ...  # point the code under test at fhir_stub.base_url, allow-list fhir_stub.host
        assert fhir_stub.requests[0].headers["Authorization"] == "Bearer t"

Import the fixture into a test module with `from tests.fhir_stub import fhir_stub`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

BASE_PATH = "/fhir"
SHUTDOWN_SECONDS = 5.0  # the most close() waits for handler threads
HANDLER_SOCKET_TIMEOUT = 10.0  # a client that stops talking cannot hold a handler thread longer


class Headers(dict[str, str]):
    """Request headers: keys stored lower-case, looked up case-insensitively (h["Authorization"])."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__((str(name).lower(), value) for name, value in items)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)


@dataclass(frozen=True)
class Recorded:
    """One request as received. path_and_query is relative to base_url (raw, as sent) when the
    request was under it, else the full request target."""

    method: str
    path_and_query: str
    headers: Headers


@dataclass(frozen=True)
class _Route:
    status: int
    body: bytes
    content_type: str | None
    headers: dict[str, str | None]
    delay: float


def _key(path_and_query: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Decoded path and ordered decoded parameters, so 'a%7Cb' and 'a|b' match."""
    path, _, query = path_and_query.lstrip("/").partition("?")
    return unquote(path), tuple(parse_qsl(query, keep_blank_values=True))


def _operation_outcome(status: int, code: str, text: str) -> tuple[int, bytes]:
    issue = {"severity": "error", "code": code, "diagnostics": text}
    return status, json.dumps({"resourceType": "OperationOutcome", "issue": [issue]}).encode()


class FhirStub:
    """A threaded HTTP/1.0 server on 127.0.0.1 at a free port, serving until close().

    HTTP/1.0 closes every connection after its response, so no client keeps an idle socket to
    the stub in its pool after the test (which would surface as a ResourceWarning).
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._routes: dict[tuple[str, tuple[tuple[str, str], ...]], _Route] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self.base_url = f"http://{self.host}{BASE_PATH}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fhir-stub", daemon=True
        )
        self._thread.start()

    def add(
        self,
        path_and_query: str,
        body: dict[str, Any] | list[Any] | bytes,
        *,
        status: int = 200,
        content_type: str | None = "application/fhir+json",
        headers: dict[str, str | None] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer GET {base_url}/{path_and_query} with body (JSON-encoded unless bytes).

        headers add to or replace the defaults (Content-Type, Content-Length), matched without
        regard to case; a None value drops one, e.g. {"Content-Length": None} for a body delimited
        by closing the connection. delay waits before answering (cut short by close()).
        """
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        route = _Route(status, raw, content_type, dict(headers or {}), delay)
        with self._lock:
            self._routes[_key(path_and_query)] = route

    def url(self, path_and_query: str) -> str:
        return f"{self.base_url}/{path_and_query.lstrip('/')}"

    def close(self) -> None:
        """Stop serving and wait (at most SHUTDOWN_SECONDS) for handler threads. Idempotent."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + SHUTDOWN_SECONDS
        self._stopping.set()  # wakes handlers sleeping on a delay
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
            threads = [*self._threads, self._thread]
        for connection in connections:  # unblocks handlers waiting on a silent client
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FhirStub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Called from handler threads.
    def _route(self, path_and_query: str) -> _Route | None:
        with self._lock:
            return self._routes.get(_key(path_and_query))

    def _record(self, recorded: Recorded) -> None:
        with self._lock:
            self.requests.append(recorded)

    def _started(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)

    def _track(self, connection: socket.socket, active: bool) -> None:
        with self._lock:
            if active:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], stub: FhirStub) -> None:
        self.stub = stub
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall where DNS is missing.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        # As ThreadingMixIn does, but every thread is known to close() so it can be joined.
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), name="fhir-stub-request", daemon=True
        )
        self.stub._started(thread)
        thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that gave up (timeout and size tests) reset the connection: expected, not news.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"
    timeout = HANDLER_SOCKET_TIMEOUT

    def setup(self) -> None:
        super().setup()
        self.server.stub._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.stub._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def do_POST(self) -> None:
        self._reject()

    do_PUT = do_PATCH = do_DELETE = do_POST

    def _relative(self) -> str | None:
        target = urlsplit(self.path)
        prefix = BASE_PATH + "/"
        if not target.path.startswith(prefix):
            return None
        return target.path[len(prefix) :] + (f"?{target.query}" if target.query else "")

    def _record(self) -> str | None:
        relative = self._relative()
        self.server.stub._record(
            Recorded(self.command, self.path if relative is None else relative, Headers(self.headers.items()))
        )
        return relative

    def _serve(self, send_body: bool) -> None:
        relative = self._record()
        route = None if relative is None else self.server.stub._route(relative)
        if route is None:
            status, body = _operation_outcome(404, "not-found", "no stub response for this request")
            self._send(status, body, "application/fhir+json", {}, send_body)
            return
        if route.delay and self.server.stub._stopping.wait(route.delay):
            return  # closing: drop the connection unanswered
        self._send(route.status, route.body, route.content_type, route.headers, send_body)

    def _reject(self) -> None:
        self._record()
        status, body = _operation_outcome(405, "not-supported", "the stub answers GET and HEAD only")
        self._send(status, body, "application/fhir+json", {}, True)

    def _send(
        self, status: int, body: bytes, content_type: str | None, extra: dict[str, str | None], send_body: bool
    ) -> None:
        headers: dict[str, str] = {"Content-Length": str(len(body))}
        if content_type is not None:
            headers["Content-Type"] = content_type
        for name, value in extra.items():
            for existing in [h for h in headers if h.lower() == name.lower()]:
                del headers[existing]
            if value is not None:
                headers[name] = value
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)


@pytest.fixture
def fhir_stub() -> Iterator[FhirStub]:
    """A running FhirStub, closed after the test."""
    with FhirStub() as stub:
        yield stub
