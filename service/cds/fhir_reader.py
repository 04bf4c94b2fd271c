"""FHIR R4 reads from the EHR's FHIR server, for CDS Hooks prefetch the client did not send.

The access token belongs to the EHR and speaks for one user and patient, so it is only ever sent to
an allow-listed host: never through proxies taken from the environment, never on a redirect, and
never written into an exception, a traceback or a log line. The URL and the body are kept out of
them as well, since both can name the patient.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import requests
import urllib3.exceptions

from service.jsoncodec import InvalidJSON, parse_strict_json

REASONS = frozenset(
    {
        "no_server",
        "scheme",
        "host_not_allowed",
        "timeout",
        "connect",
        "redirect",
        "status",
        "too_large",
        "content_type",
        "not_json",
        "invalid",
        "deadline",  # the call's time for FHIR reads (CDS_FHIR_DEADLINE_SECONDS) is used up
        "busy",  # this worker already has CDS_FHIR_MAX_CONCURRENT reads waiting on FHIR servers
    }
)
FHIR_JSON = frozenset({"application/fhir+json", "application/json"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CHUNK = 64 * 1024
# Connect and read timeouts bound each socket operation, not the whole exchange: a server that
# drips one byte at a time would never trip them. The whole read gets this many timeouts at most.
_TOTAL_TIMEOUTS = 3
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
# RFC 6750 b64token, loosened to any visible ASCII: enough to keep CR/LF out of the header.
_TOKEN = re.compile(r"[\x21-\x7e]+")


class FhirUnavailable(Exception):
    """The data could not be read. `reason` is one of REASONS; `status` is the HTTP status, if any.

    The message is built from those two only, so it never carries the URL, query, token or body.
    """

    def __init__(self, reason: str, status: int | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        self.reason = reason
        self.status = status
        super().__init__(reason if status is None else f"{reason} (HTTP {status})")

    def __repr__(self) -> str:
        return f"FhirUnavailable(reason={self.reason!r}, status={self.status!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.status))


class FhirReader:
    """GETs FHIR resources with the EHR's bearer token from hosts on an allow-list.

    One requests.Session per reader: its connection pool is shared by the worker's threads, which is
    safe for plain GETs, and its cookie jar is disabled so nothing set for one user reaches another.

    A bulkhead: at most `max_concurrent` reads wait on FHIR servers at once in this process; one more is
    refused at once ("busy") rather than queued, so a slow EHR cannot take every thread that serves
    /v1/triage. Each read also ends by the caller's `deadline`, whatever its own timeouts allow.
    """

    def __init__(
        self,
        allowed_hosts: Iterable[str],
        *,
        allow_http: bool = False,
        timeout: float = 2.0,
        max_bytes: int = 4 * 1024 * 1024,
        max_concurrent: int = 2,
    ) -> None:
        if isinstance(allowed_hosts, str):
            # A bare string would be read as a list of one-letter hosts.
            raise TypeError("allowed_hosts must be an iterable of host or host:port strings, not a string")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        if max_bytes <= 0 or max_concurrent <= 0:
            raise ValueError("max_bytes and max_concurrent must be positive")
        self._allowed = frozenset(_allowed_entry(entry) for entry in allowed_hosts if entry.strip())
        self._allow_http = allow_http
        self._timeout = float(timeout)
        self._max_bytes = max_bytes
        self._slots = threading.BoundedSemaphore(max_concurrent)
        session = requests.Session()
        session.trust_env = False  # no proxies, .netrc or CA bundle from the environment
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self._session = session

    def close(self) -> None:
        """Close pooled connections (the reader still works afterwards and opens new ones)."""
        self._session.close()

    def __enter__(self) -> FhirReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def read(
        self, base_url: str | None, query: str, access_token: str | None, deadline: float | None = None
    ) -> dict[str, Any]:
        """GET {base_url}/{query} and return the parsed resource, or raise FhirUnavailable.

        query is relative to the FHIR base and already filled in: 'Patient/123' or
        'Observation?patient=123&_count=100'. deadline: time.monotonic() by which the read must end.
        """
        base, target = self._check_base(base_url)
        url = f"{base.rstrip('/')}/{_relative(query)}"
        headers = {"Accept": "application/fhir+json"}
        if access_token:
            if not isinstance(access_token, str) or not _TOKEN.fullmatch(access_token):
                raise FhirUnavailable("invalid")
            headers["Authorization"] = f"Bearer {access_token}"

        # Exceptions from requests and urllib3 quote the URL, so none of them is chained or kept as
        # context: the reason is noted inside the handler and raised outside it.
        timeout = self._timeout
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                raise FhirUnavailable("deadline")
        if not self._slots.acquire(blocking=False):
            raise FhirUnavailable("busy")
        reason: str
        try:
            return self._get(url, headers, target, timeout, deadline)  # FhirUnavailable passes through
        except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError):
            reason = "timeout"
        except requests.ConnectionError as exc:
            # A read timeout while streaming the body arrives as ConnectionError(ReadTimeoutError).
            timed_out = any(isinstance(arg, urllib3.exceptions.TimeoutError) for arg in exc.args)
            reason = "timeout" if timed_out else "connect"
        except (requests.exceptions.ContentDecodingError, urllib3.exceptions.DecodeError):
            reason = "not_json"
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidHeader,
            urllib3.exceptions.LocationValueError,
        ):
            reason = "invalid"
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
            reason = "connect"
        finally:
            self._slots.release()
        raise FhirUnavailable(reason)

    def _check_base(self, base_url: str | None) -> tuple[str, tuple[str, str, int]]:
        if not base_url:
            raise FhirUnavailable("no_server")
        if not isinstance(base_url, str) or not _plain_ascii(base_url) or "\\" in base_url:
            raise FhirUnavailable("invalid")
        parts, port = _split(base_url)
        if parts is None:
            raise FhirUnavailable("invalid")
        scheme = parts.scheme.lower()
        if scheme != "https" and not (scheme == "http" and self._allow_http):
            raise FhirUnavailable("scheme")
        if "@" in parts.netloc or "?" in base_url or "#" in base_url or not parts.hostname:
            raise FhirUnavailable("invalid")
        host = parts.hostname.lower()
        port = port or _DEFAULT_PORTS[scheme]
        # An entry without a port means the default port of the URL's scheme, not any port.
        if (host, port) not in self._allowed and (port != _DEFAULT_PORTS[scheme] or (host, None) not in self._allowed):
            raise FhirUnavailable("host_not_allowed")
        return base_url, (scheme, host, port)

    def _get(
        self, url: str, headers: dict[str, str], target: tuple[str, str, int], timeout: float, deadline: float | None
    ) -> dict[str, Any]:
        started = time.monotonic()
        prepared = self._session.prepare_request(requests.Request("GET", url, headers=headers))
        # Check again what requests will actually connect to, in case its URL parser reads the
        # authority differently from urllib.parse.
        sent, sent_port = _split(prepared.url or "")
        sent_scheme = sent.scheme.lower() if sent is not None else ""
        if (
            sent is None
            or sent_scheme not in _DEFAULT_PORTS
            or (sent_scheme, (sent.hostname or "").lower(), sent_port or _DEFAULT_PORTS[sent_scheme]) != target
        ):
            raise FhirUnavailable("invalid")
        with self._session.send(prepared, timeout=(timeout, timeout), allow_redirects=False, stream=True) as response:
            status = response.status_code
            if 300 <= status < 400:
                raise FhirUnavailable("redirect", status)
            if status != 200:
                raise FhirUnavailable("status", status)
            if not _fhir_json(response.headers.get("Content-Type", "")):
                raise FhirUnavailable("content_type")
            length = response.headers.get("Content-Length", "")
            if length.isascii() and length.isdigit() and int(length) > self._max_bytes:
                raise FhirUnavailable("too_large")
            ends = started + _TOTAL_TIMEOUTS * timeout
            body = self._body(response, ends if deadline is None else min(ends, deadline))
        return _parse(body)

    def _body(self, response: requests.Response, deadline: float) -> bytes:
        # read1 returns what one socket read brings, so the deadline is checked at least once per
        # read timeout; read/iter_content would wait for a whole chunk however slowly it arrives.
        # Decoded bytes are counted, so a small gzip body cannot inflate past max_bytes.
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise FhirUnavailable("timeout")
            chunk = response.raw.read1(_CHUNK, decode_content=True)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self._max_bytes:
                raise FhirUnavailable("too_large")
            chunks.append(chunk)


def _allowed_entry(entry: str) -> tuple[str, int | None]:
    text = entry.strip()
    parts, port = (None, None)
    if _plain_ascii(text) and not set("/?#@\\") & set(text):  # host or host:port, nothing more
        parts, port = _split("//" + text)
    if parts is None or not parts.hostname:
        raise ValueError(f"allowed host must be host or host:port, got {entry!r}")
    return parts.hostname.lower(), port


def _split(url: str) -> tuple[SplitResult | None, int | None]:
    """urlsplit and its port, or (None, None) when either is malformed (bad brackets, port)."""
    try:
        parts = urlsplit(url)
        return parts, parts.port
    except ValueError:
        return None, None


def _plain_ascii(text: str) -> bool:
    """Visible ASCII only: urlsplit silently drops tabs and newlines, and other parsers differ."""
    return text.isascii() and text.isprintable() and " " not in text


def _relative(query: str) -> str:
    """The query as a path relative to the base, or FhirUnavailable('invalid')."""
    if not isinstance(query, str) or not query.isprintable() or any(c.isspace() for c in query):
        raise FhirUnavailable("invalid")
    if query.startswith("//"):
        raise FhirUnavailable("invalid")
    query = query.removeprefix("/")
    path, _, _ = query.partition("?")
    # ':' in the path would be a scheme (https:, javascript:); FHIR types, ids and operations have
    # none. Backslashes and encoded slashes are read as '/' by some servers; '#' would be dropped.
    if not path or ":" in path or "\\" in path or "#" in query:
        raise FhirUnavailable("invalid")
    for segment in path.split("/"):
        decoded = unquote(segment)
        if not segment or decoded in {".", ".."} or "/" in decoded or "\\" in decoded:
            raise FhirUnavailable("invalid")
    return query


def _fhir_json(content_type: str) -> bool:
    media, *params = content_type.split(";")
    if media.strip().lower() not in FHIR_JSON:
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in {"utf-8", "utf8"}:
            return False  # the body is decoded as UTF-8 and nothing else
    return True


_NOT_JSON = object()


def _parse(body: bytes) -> dict[str, Any]:
    try:
        value = parse_strict_json(body)
    except InvalidJSON:
        value = _NOT_JSON  # raised outside the handler: not even __context__ may quote the body
    if value is _NOT_JSON:
        raise FhirUnavailable("not_json")
    resource_type = value.get("resourceType") if isinstance(value, dict) else None
    if not isinstance(resource_type, str) or not _RESOURCE_TYPE.fullmatch(resource_type):
        raise FhirUnavailable("invalid")
    return value
