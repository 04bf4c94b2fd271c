"""FhirReader against a loopback FHIR stub: what it sends, where it refuses to send, what it accepts back."""

from __future__ import annotations

import gzip
import pickle
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from service.cds.fhir_reader import REASONS, FhirReader, FhirUnavailable
from tests.fhir_stub import FhirStub, fhir_stub
from tests.live import wait_until

__all__ = ["fhir_stub"]  # the fixture is used by name

TOKEN = "eyJ0b2tlbi1zZWNyZXQiOnRydWV9.c2lnbmF0dXJl"
PATIENT = {"resourceType": "Patient", "id": "123"}


@pytest.fixture
def make_reader() -> Iterator[Callable[..., FhirReader]]:
    """Readers over plain http (loopback), closed after the test so no pooled socket is left behind."""
    readers: list[FhirReader] = []

    def make(allowed: list[str], **options: object) -> FhirReader:
        options.setdefault("allow_http", True)
        reader = FhirReader(allowed, **options)  # type: ignore[arg-type]
        readers.append(reader)
        return reader

    yield make
    for reader in readers:
        reader.close()


@pytest.fixture
def reader(fhir_stub: FhirStub, make_reader: Callable[..., FhirReader]) -> FhirReader:
    return make_reader([fhir_stub.host], timeout=2.0)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unavailable(call: Callable[[], object]) -> FhirUnavailable:
    with pytest.raises(FhirUnavailable) as caught:
        call()
    return caught.value


@contextmanager
def raw_server(respond: Callable[[socket.socket, threading.Event], None]) -> Iterator[str]:
    """A one-connection server writing raw bytes, for what http.server cannot do: stalls, drips, chunks.
    Yields host:port; stops within seconds."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    stop = threading.Event()

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(5)
            try:
                received = b""
                while b"\r\n\r\n" not in received:
                    part = connection.recv(4096)
                    if not part:
                        return
                    received += part
                respond(connection, stop)
            except OSError:
                pass  # the client gave up, which is what these tests expect

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(5)


JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nConnection: close\r\n"


# What is sent


def test_read_returns_resource_and_sends_token_and_accept(fhir_stub: FhirStub, reader: FhirReader) -> None:
    fhir_stub.add("Patient/123", PATIENT)
    assert reader.read(fhir_stub.base_url, "Patient/123", TOKEN) == PATIENT
    [request] = fhir_stub.requests
    assert (request.method, request.path_and_query) == ("GET", "Patient/123")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/fhir+json"


def test_search_query_is_sent_as_given(fhir_stub: FhirStub, reader: FhirReader) -> None:
    query = "Observation?patient=123&category=exam&_sort=-date&_count=100"
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    fhir_stub.add(query, bundle)
    assert reader.read(fhir_stub.base_url, query, TOKEN) == bundle
    assert [r.path_and_query for r in fhir_stub.requests] == [query]


def test_base_and_query_joined_with_one_slash(fhir_stub: FhirStub, reader: FhirReader) -> None:
    fhir_stub.add("Patient/123", PATIENT)
    assert reader.read(fhir_stub.base_url + "/", "/Patient/123", TOKEN) == PATIENT
    assert fhir_stub.requests[0].path_and_query == "Patient/123"


@pytest.mark.parametrize("token", [None, ""])
def test_no_authorization_without_token(fhir_stub: FhirStub, reader: FhirReader, token: str | None) -> None:
    fhir_stub.add("Patient/123", PATIENT)
    assert reader.read(fhir_stub.base_url, "Patient/123", token) == PATIENT
    assert "Authorization" not in fhir_stub.requests[0].headers


def test_netrc_in_environment_ignored(
    fhir_stub: FhirStub, reader: FhirReader, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    fhir_stub.add("Patient/123", PATIENT)
    reader.read(fhir_stub.base_url, "Patient/123", None)
    assert "Authorization" not in fhir_stub.requests[0].headers


def test_environment_proxies_ignored(fhir_stub: FhirStub, reader: FhirReader, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    fhir_stub.add("Patient/123", PATIENT)
    assert reader.read(fhir_stub.base_url, "Patient/123", TOKEN) == PATIENT


def test_cookies_never_carried_between_reads(fhir_stub: FhirStub, reader: FhirReader) -> None:
    fhir_stub.add("Patient/1", PATIENT, headers={"Set-Cookie": "session=user-a; Path=/"})
    fhir_stub.add("Patient/2", PATIENT)
    reader.read(fhir_stub.base_url, "Patient/1", "token-a")
    reader.read(fhir_stub.base_url, "Patient/2", "token-b")
    assert "Cookie" not in fhir_stub.requests[1].headers


# Where it refuses to send


@pytest.mark.parametrize("base_url", [None, ""])
def test_no_server(reader: FhirReader, base_url: str | None) -> None:
    assert unavailable(lambda: reader.read(base_url, "Patient/123", TOKEN)).reason == "no_server"


def test_host_on_other_port_not_allowed(fhir_stub: FhirStub, make_reader: Callable[..., FhirReader]) -> None:
    reader = make_reader([f"127.0.0.1:{closed_port()}"])
    fhir_stub.add("Patient/123", PATIENT)
    assert unavailable(lambda: reader.read(fhir_stub.base_url, "Patient/123", TOKEN)).reason == "host_not_allowed"
    assert fhir_stub.requests == []


def test_other_hostname_for_same_server_not_allowed(fhir_stub: FhirStub, reader: FhirReader) -> None:
    # localhost reaches the stub too, so only the allow-list stands between the token and it.
    port = fhir_stub.host.rsplit(":", 1)[1]
    fhir_stub.add("Patient/123", PATIENT)
    other = f"http://localhost:{port}/fhir"
    assert unavailable(lambda: reader.read(other, "Patient/123", TOKEN)).reason == "host_not_allowed"
    assert fhir_stub.requests == []


def test_entry_without_port_means_default_port(fhir_stub: FhirStub, make_reader: Callable[..., FhirReader]) -> None:
    reader = make_reader(["127.0.0.1"], timeout=0.5)
    fhir_stub.add("Patient/123", PATIENT)
    assert unavailable(lambda: reader.read(fhir_stub.base_url, "Patient/123", TOKEN)).reason == "host_not_allowed"
    assert fhir_stub.requests == []
    # Port 80 is the default for http, so these pass the allow-list (and then fail to connect, or
    # meet whatever listens there).
    for base in ("http://127.0.0.1/fhir", "http://127.0.0.1:80/fhir"):
        assert unavailable(lambda base=base: reader.read(base, "Patient/123", None)).reason != "host_not_allowed"


def test_allow_list_ignores_case(fhir_stub: FhirStub, make_reader: Callable[..., FhirReader]) -> None:
    port = fhir_stub.host.rsplit(":", 1)[1]
    reader = make_reader([f"LocalHost:{port}"])
    fhir_stub.add("Patient/123", PATIENT)
    assert reader.read(f"http://LOCALHOST:{port}/fhir", "Patient/123", TOKEN) == PATIENT


def test_empty_allow_list_allows_nothing(fhir_stub: FhirStub, make_reader: Callable[..., FhirReader]) -> None:
    reader = make_reader([])
    fhir_stub.add("Patient/123", PATIENT)
    assert unavailable(lambda: reader.read(fhir_stub.base_url, "Patient/123", TOKEN)).reason == "host_not_allowed"
    assert fhir_stub.requests == []


def test_http_refused_unless_allowed(fhir_stub: FhirStub, make_reader: Callable[..., FhirReader]) -> None:
    fhir_stub.add("Patient/123", PATIENT)
    strict = make_reader([fhir_stub.host], allow_http=False)
    assert unavailable(lambda: strict.read(fhir_stub.base_url, "Patient/123", TOKEN)).reason == "scheme"
    assert fhir_stub.requests == []
    assert make_reader([fhir_stub.host]).read(fhir_stub.base_url, "Patient/123", TOKEN) == PATIENT


@pytest.mark.parametrize("scheme", ["ftp", "file", "ws"])
def test_other_schemes_refused(fhir_stub: FhirStub, reader: FhirReader, scheme: str) -> None:
    base = fhir_stub.base_url.replace("http", scheme, 1)
    assert unavailable(lambda: reader.read(base, "Patient/123", TOKEN)).reason == "scheme"


@pytest.mark.parametrize(
    "template",
    [
        "http://{host}/fhir?_format=json",
        "http://{host}/fhir?",
        "http://{host}/fhir#part",
        "http://user@{host}/fhir",
        "http://user:pw@{host}/fhir",
        "http://{host}/fh ir",
        "http://{host}/fhir\t",
        "http://{host}\\@evil.example/fhir",
        "http://{host}:99999/fhir",
    ],
)
def test_base_url_with_query_or_userinfo_invalid(fhir_stub: FhirStub, reader: FhirReader, template: str) -> None:
    base = template.format(host=fhir_stub.host)
    assert unavailable(lambda: reader.read(base, "Patient/123", TOKEN)).reason == "invalid"
    assert fhir_stub.requests == []


@pytest.mark.parametrize(
    "query",
    [
        "https://evil.example/Patient/123",
        "http:Patient/123",
        "//evil.example/Patient/123",
        "Patient/../../admin",
        "../Patient/123",
        "Patient/123/..",
        "Patient/./123",
        "Patient/%2e%2e/x",
        "Patient/%2E%2E/x",
        "Patient%2F123",
        "Patient\\..\\x",
        "Patient//123",
        "Patient/123#x",
        "Patient/123 HTTP/1.1",
        "Patient/123\r\nX: y",
        "",
        "/",
        "?patient=123",
    ],
)
def test_query_must_be_relative(fhir_stub: FhirStub, reader: FhirReader, query: str) -> None:
    assert unavailable(lambda: reader.read(fhir_stub.base_url, query, TOKEN)).reason == "invalid"
    assert fhir_stub.requests == []


def test_search_values_may_hold_urls_and_escapes(fhir_stub: FhirStub, reader: FhirReader) -> None:
    query = "Observation?patient=123&code=http://loinc.org|8310-5&note=a\\,b"
    fhir_stub.add(query, {"resourceType": "Bundle"})
    assert reader.read(fhir_stub.base_url, query, TOKEN) == {"resourceType": "Bundle"}


@pytest.mark.parametrize("token", ["abc\r\nX-Injected: 1", "abc def", "abc\n"])
def test_token_that_would_break_the_header_refused(fhir_stub: FhirStub, reader: FhirReader, token: str) -> None:
    fhir_stub.add("Patient/123", PATIENT)
    assert unavailable(lambda: reader.read(fhir_stub.base_url, "Patient/123", token)).reason == "invalid"
    assert fhir_stub.requests == []


# What comes back


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_not_followed(fhir_stub: FhirStub, reader: FhirReader, status: int) -> None:
    fhir_stub.add("Patient/123", {}, status=status, headers={"Location": fhir_stub.url("Patient/elsewhere")})
    fhir_stub.add("Patient/elsewhere", PATIENT)
    error = unavailable(lambda: reader.read(fhir_stub.base_url, "Patient/123", TOKEN))
    assert (error.reason, error.status) == ("redirect", status)
    assert [r.path_and_query for r in fhir_stub.requests] == ["Patient/123"]


@pytest.mark.parametrize("status", [500, 401, 404, 201])
def test_non_200_status(fhir_stub: FhirStub, reader: FhirReader, status: int) -> None:
    fhir_stub.add("Patient/123", {"resourceType": "OperationOutcome"}, status=status)
    error = unavailable(lambda: reader.read(fhir_stub.base_url, "Patient/123", TOKEN))
    assert (error.reason, error.status) == ("status", status)


def test_unknown_path_is_404_from_stub(fhir_stub: FhirStub, reader: FhirReader) -> None:
    error = unavailable(lambda: reader.read(fhir_stub.base_url, "Patient/nobody", TOKEN))
    assert (error.reason, error.status) == ("status", 404)


def test_slow_response_times_out(fhir_stub: FhirStub, make_reader: Callable[..., FhirReader]) -> None:
    reader = make_reader([fhir_stub.host], timeout=0.3)
    fhir_stub.add("Patient/123", PATIENT, delay=1.0)
    started = time.monotonic()
    assert unavailable(lambda: reader.read(fhir_stub.base_url, "Patient/123", TOKEN)).reason == "timeout"
    assert time.monotonic() - started < 0.9


def test_the_calls_deadline_ends_a_read_before_its_own_timeout(
    fhir_stub: FhirStub, make_reader: Callable[..., FhirReader]
) -> None:
    # Issue 20, item 9: three slow reads of one call must not add up past the call's deadline.
    reader = make_reader([fhir_stub.host], timeout=2.0)
    fhir_stub.add("Patient/123", PATIENT, delay=1.5)
    started = time.monotonic()
    deadline = started + 0.3
    assert unavailable(lambda: reader.read(fhir_stub.base_url, "Patient/123", TOKEN, deadline)).reason == "timeout"
    assert time.monotonic() - started < 1.0
    assert unavailable(lambda: reader.read(fhir_stub.base_url, "Patient/123", TOKEN, deadline)).reason == "deadline"


def test_reads_past_the_bulkhead_are_refused_at_once(
    fhir_stub: FhirStub, make_reader: Callable[..., FhirReader]
) -> None:
    # Issue 20, item 9: a slow FHIR server holds at most max_concurrent threads; the next read is
    # refused without waiting, and a slot frees up when a read ends.
    reader = make_reader([fhir_stub.host], timeout=2.0, max_concurrent=2)
    fhir_stub.add("Patient/slow", PATIENT, delay=1.0)
    fhir_stub.add("Patient/123", PATIENT)
    with ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(reader.read, fhir_stub.base_url, "Patient/slow", TOKEN) for _ in range(2)]
        assert wait_until(lambda: len(fhir_stub.requests) >= 2, timeout=2)
        started = time.monotonic()
        assert unavailable(lambda: reader.read(fhir_stub.base_url, "Patient/123", TOKEN)).reason == "busy"
        assert time.monotonic() - started < 0.2
        assert [future.result(timeout=5) for future in slow] == [PATIENT, PATIENT]
    assert reader.read(fhir_stub.base_url, "Patient/123", TOKEN) == PATIENT


def test_body_that_stalls_times_out(make_reader: Callable[..., FhirReader]) -> None:
    def respond(connection: socket.socket, stop: threading.Event) -> None:
        connection.sendall(JSON_HEAD + b"Content-Length: 100\r\n\r\n" + b'{"resourceType":')
        stop.wait(5)

    with raw_server(respond) as host:
        reader = make_reader([host], timeout=0.3)
        started = time.monotonic()
        assert unavailable(lambda: reader.read(f"http://{host}/fhir", "Patient/1", TOKEN)).reason == "timeout"
        assert time.monotonic() - started < 2


def test_body_that_drips_times_out_overall(make_reader: Callable[..., FhirReader]) -> None:
    # A byte every 0.1 s never trips a 0.3 s read timeout; the overall bound must end it.
    def respond(connection: socket.socket, stop: threading.Event) -> None:
        connection.sendall(JSON_HEAD + b"Content-Length: 1000\r\n\r\n")
        for _ in range(40):  # then hang up short: a reader without the bound fails in 4 s, not 100
            if stop.wait(0.1):
                return
            connection.sendall(b" ")

    with raw_server(respond) as host:
        reader = make_reader([host], timeout=0.3)
        started = time.monotonic()
        assert unavailable(lambda: reader.read(f"http://{host}/fhir", "Patient/1", TOKEN)).reason == "timeout"
        assert time.monotonic() - started < 3


def test_chunked_body_read(make_reader: Callable[..., FhirReader]) -> None:
    def respond(connection: socket.socket, stop: threading.Event) -> None:
        connection.sendall(JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        for part in (b'{"resourceType":', b' "Patient", "id": "1"}'):
            connection.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        connection.sendall(b"0\r\n\r\n")

    with raw_server(respond) as host:
        reader = make_reader([host])
        assert reader.read(f"http://{host}/fhir", "Patient/1", TOKEN) == {"resourceType": "Patient", "id": "1"}


def test_chunked_body_over_limit(make_reader: Callable[..., FhirReader]) -> None:
    def respond(connection: socket.socket, stop: threading.Event) -> None:
        connection.sendall(JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(100):
            connection.sendall(b"400\r\n" + b" " * 1024 + b"\r\n")
        connection.sendall(b"0\r\n\r\n")

    with raw_server(respond) as host:
        reader = make_reader([host], max_bytes=10_000)
        assert unavailable(lambda: reader.read(f"http://{host}/fhir", "Patient/1", TOKEN)).reason == "too_large"


def test_closed_port_is_connect(make_reader: Callable[..., FhirReader]) -> None:
    host = f"127.0.0.1:{closed_port()}"
    reader = make_reader([host])
    assert unavailable(lambda: reader.read(f"http://{host}/fhir", "Patient/123", TOKEN)).reason == "connect"


def big_patient(size: int) -> bytes:
    return b'{"resourceType": "Patient", "text": "' + b"x" * size + b'"}'


@pytest.mark.parametrize("headers", [None, {"Content-Length": None}], ids=["declared", "undeclared"])
def test_body_over_max_bytes(
    fhir_stub: FhirStub, make_reader: Callable[..., FhirReader], headers: dict[str, str | None] | None
) -> None:
    reader = make_reader([fhir_stub.host], max_bytes=10_000)
    fhir_stub.add("Patient/123", big_patient(20_000), headers=headers)
    assert unavailable(lambda: reader.read(fhir_stub.base_url, "Patient/123", TOKEN)).reason == "too_large"


def test_body_of_exactly_max_bytes_accepted(fhir_stub: FhirStub, make_reader: Callable[..., FhirReader]) -> None:
    body = big_patient(1000)
    reader = make_reader([fhir_stub.host], max_bytes=len(body))
    fhir_stub.add("Patient/123", body, headers={"Content-Length": None})
    assert reader.read(fhir_stub.base_url, "Patient/123", TOKEN)["resourceType"] == "Patient"


def test_compressed_body_counted_after_decompression(
    fhir_stub: FhirStub, make_reader: Callable[..., FhirReader]
) -> None:
    reader = make_reader([fhir_stub.host], max_bytes=100_000)
    small = gzip.compress(big_patient(1000))
    bomb = gzip.compress(big_patient(1_000_000))
    assert len(bomb) < 100_000
    fhir_stub.add("Patient/small", small, headers={"Content-Encoding": "gzip"})
    fhir_stub.add("Patient/bomb", bomb, headers={"Content-Encoding": "gzip"})
    assert reader.read(fhir_stub.base_url, "Patient/small", TOKEN)["text"] == "x" * 1000
    assert unavailable(lambda: reader.read(fhir_stub.base_url, "Patient/bomb", TOKEN)).reason == "too_large"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/fhir+json",
        "application/json",
        "application/fhir+json; charset=utf-8",
        "Application/JSON;charset=UTF8",
    ],
)
def test_json_content_types_accepted(fhir_stub: FhirStub, reader: FhirReader, content_type: str) -> None:
    fhir_stub.add("Patient/123", PATIENT, content_type=content_type)
    assert reader.read(fhir_stub.base_url, "Patient/123", TOKEN) == PATIENT


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "text/html; charset=utf-8",
        "application/xml",
        "application/fhir+xml",
        "application/json; charset=iso-8859-1",
        "",
        None,
    ],
)
def test_other_content_types_refused(fhir_stub: FhirStub, reader: FhirReader, content_type: str | None) -> None:
    fhir_stub.add("Patient/123", PATIENT, content_type=content_type)
    assert unavailable(lambda: reader.read(fhir_stub.base_url, "Patient/123", TOKEN)).reason == "content_type"


@pytest.mark.parametrize(
    "body",
    [
        b'{"resourceType": "Patient",',
        b"",
        b"not json",
        b'{"resourceType": "Observation", "valueQuantity": {"value": NaN}}',
        b'{"resourceType": "Observation", "valueQuantity": {"value": Infinity}}',
        b'{"resourceType": "Observation", "valueQuantity": {"value": -Infinity}}',
        b'{"resourceType": "Observation", "valueQuantity": {"value": 1e400}}',
        b'{"resourceType": "Patient", "id": "1", "id": "2"}',
        b'{"resourceType": "Patient", "name": [{"family": "A", "family": "B"}]}',
        b'{"resourceType": "Patient", "id": "\xff"}',
        b'\xef\xbb\xbf{"resourceType": "Patient"}',
        b'{"resourceType": "Patient"} trailing',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=lambda body: body[:40].decode("latin-1"),
)
def test_not_strict_json(fhir_stub: FhirStub, reader: FhirReader, body: bytes) -> None:
    fhir_stub.add("Patient/123", body)
    assert unavailable(lambda: reader.read(fhir_stub.base_url, "Patient/123", TOKEN)).reason == "not_json"


@pytest.mark.parametrize(
    "body",
    [
        [],
        [PATIENT],
        {},
        {"id": "123"},
        {"resourceType": 5},
        {"resourceType": ""},
        {"resourceType": "patient"},
        {"resourceType": "Patient\n"},
        b'"Patient"',
        b"null",
    ],
    ids=repr,
)
def test_not_a_resource(fhir_stub: FhirStub, reader: FhirReader, body: object) -> None:
    fhir_stub.add("Patient/123", body)  # type: ignore[arg-type]
    assert unavailable(lambda: reader.read(fhir_stub.base_url, "Patient/123", TOKEN)).reason == "invalid"


# What the exception gives away


def test_exceptions_never_carry_token_url_or_body(fhir_stub: FhirStub, make_reader: Callable[..., FhirReader]) -> None:
    secret_body = b'{"resourceType": "Patient", "name": "Secret Name", "name": "again"}'
    fhir_stub.add("Patient/dup", secret_body)
    fhir_stub.add("Patient/500", b"Secret Name", status=500, content_type="text/plain")
    fhir_stub.add("Patient/slow", PATIENT, delay=1.0)
    reader = make_reader([fhir_stub.host], timeout=0.3)
    closed = f"127.0.0.1:{closed_port()}"
    other = make_reader([closed], timeout=0.3)
    cases = [
        lambda: reader.read(fhir_stub.base_url, "Patient/dup", TOKEN),
        lambda: reader.read(fhir_stub.base_url, "Patient/500", TOKEN),
        lambda: reader.read(fhir_stub.base_url, "Patient/slow", TOKEN),
        lambda: reader.read(fhir_stub.base_url, "Patient/../secret", TOKEN),
        lambda: reader.read(fhir_stub.base_url.replace("127.0.0.1", "localhost"), "Patient/1", TOKEN),
        lambda: other.read(f"http://{closed}/fhir", "Patient/secret-id", TOKEN),
    ]
    reasons = set()
    for case in cases:
        error = unavailable(case)
        reasons.add(error.reason)
        assert error.__cause__ is None
        assert error.__context__ is None  # requests' exceptions quote the URL
        message = str(error) + repr(error)
        for secret in (TOKEN, "127.0.0.1", "localhost", "fhir", "Patient", "secret", "Secret Name"):
            assert secret not in message
        # The traceback shows source lines, so only values that are not in the source are looked for.
        printed = "".join(traceback.format_exception(error))
        for secret in (TOKEN, fhir_stub.host, closed, "Secret Name"):
            assert secret not in printed
    assert reasons == {"not_json", "status", "timeout", "invalid", "host_not_allowed", "connect"}


def test_exception_shape() -> None:
    error = FhirUnavailable("status", 503)
    assert (error.reason, error.status) == ("status", 503)
    assert str(error) == "status (HTTP 503)"
    assert repr(error) == "FhirUnavailable(reason='status', status=503)"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.status) == ("status", 503)
    assert str(FhirUnavailable("timeout")) == "timeout"
    assert "timeout" in REASONS
    with pytest.raises(ValueError):
        FhirUnavailable("http://fhir.example.org/Patient/1")


# Configuration


def test_allow_list_given_as_one_string_refused() -> None:
    with pytest.raises(TypeError):
        FhirReader("fhir.example.org")


@pytest.mark.parametrize(
    "entry", ["https://fhir.example.org", "fhir.example.org/fhir", "user@fhir.example.org", "host:port"]
)
def test_malformed_allow_list_entry_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        FhirReader([entry])


def test_allow_list_entries_accepted() -> None:
    with FhirReader(["fhir.example.org", "FHIR.example.org:8443", "127.0.0.1:5555", "[::1]:8080", " "]):
        pass


# The stub itself


def test_stub_matches_decoded_parameters_in_order(fhir_stub: FhirStub, reader: FhirReader) -> None:
    fhir_stub.add("Observation?code=http://loinc.org|8310-5&patient=1", {"resourceType": "Bundle"})
    encoded = "Observation?code=http%3A%2F%2Floinc.org%7C8310-5&patient=1"
    assert reader.read(fhir_stub.base_url, encoded, None) == {"resourceType": "Bundle"}
    swapped = "Observation?patient=1&code=http://loinc.org|8310-5"
    assert unavailable(lambda: reader.read(fhir_stub.base_url, swapped, None)).status == 404


def test_stub_closes_promptly_with_request_in_flight(make_reader: Callable[..., FhirReader]) -> None:
    stub = FhirStub()
    stub.add("Patient/123", PATIENT, delay=30)
    reader = make_reader([stub.host], timeout=0.2)
    assert unavailable(lambda: reader.read(stub.base_url, "Patient/123", None)).reason == "timeout"
    started = time.monotonic()
    stub.close()
    assert time.monotonic() - started < 2
    stub.close()  # idempotent
