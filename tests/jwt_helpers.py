"""Test helpers for CDS Hooks client JWTs: signing keys, token minting and a loopback JWKS server.

key = make_es384_key("k1")
with JwksServer() as server:
    server.publish("/jwks", {"keys": [key.public_jwk()]})
    issuer = Issuer(iss="https://ehr.test", jwks_url=server.url("/jwks"))
    token = mint(key, iss="https://ehr.test", aud="http://localhost/cds-services/x")
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.warnings import InsecureKeyLengthWarning

# The example in the CDS Hooks 2.0 spec, section "JWT Signing Algorithm": an ES384 key and a token it signed.
# Header: alg ES384, typ JWT, kid example-kid, jku SPEC_JKU. Payload: SPEC_CLAIMS (exp - iat is about 3.5 years).
SPEC_JWKS: dict[str, Any] = {
    "keys": [
        {
            "kty": "EC",
            "use": "sig",
            "crv": "P-384",
            "kid": "example-kid",
            "x": "46SDH7Znh821wblCBglA61sNE9ZrHYKKt3qRtRTmSXyOI_FIGBLWrWa0GPUkDCEk",
            "y": "XMcRuuoGW7CXjQdy-F5i3FeBE0x9hPLdeFdSoDd3ELmx404tLX0VRRcqzAsPhXcI",
            "alg": "ES384",
        }
    ]
}
SPEC_TOKEN = (
    "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCIsImtpZCI6ImV4YW1wbGUta2lkIiwiamt1IjoiaHR0cHM6Ly9maGlyLWVoci5leGFtcGxlLmNvbS9q"
    "d2tfdXJpIn0.eyJpc3MiOiJodHRwczovL2ZoaXItZWhyLmV4YW1wbGUuY29tLyIsImF1ZCI6Imh0dHBzOi8vY2RzLmV4YW1wbGUub3JnL2Nkcy1zZ"
    "XJ2aWNlcy9zb21lLXNlcnZpY2UiLCJleHAiOjE0MjI1Njg4NjAsImlhdCI6MTMxMTI4MDk3MCwianRpIjoiZWUyMmIwMjEtZTFiNy00NjExLWJhNW"
    "ItOGVlYzZhMzNhYzFlIiwidGVuYW50IjoiMmRkZDZjM2EtOGU5YS00NGM2LWEzMDUtNTIxMTFhZDMwMmEyIn0.d1WfLjGRKlcWB94l9do4cM8REXe"
    "YJLL6SGUBO8VHZhfM8mwKYP70EMxJ67War4TQblEpaQrp11wx5p7oPFm2ETYgCicS84vXWEIYTdjooZdooCSDf2L8-i4awdoUwiEb"
)
SPEC_JKU = "https://fhir-ehr.example.com/jwk_uri"
SPEC_ISS = "https://fhir-ehr.example.com/"
SPEC_AUD = "https://cds.example.org/cds-services/some-service"
SPEC_CLAIMS: dict[str, Any] = {
    "iss": SPEC_ISS,
    "aud": SPEC_AUD,
    "exp": 1422568860,
    "iat": 1311280970,
    "jti": "ee22b021-e1b7-4611-ba5b-8eec6a33ac1e",
    "tenant": "2ddd6c3a-8e9a-44c6-a305-52111ad302a2",
}


@dataclass(frozen=True)
class SigningKey:
    """A client's private signing key and the JWK a CDS service would fetch for it."""

    kid: str
    alg: str
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    def public_jwk(self) -> dict[str, Any]:
        to_jwk = ECAlgorithm.to_jwk if self.alg.startswith("ES") else RSAAlgorithm.to_jwk
        jwk = to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


def make_es384_key(kid: str) -> SigningKey:
    return SigningKey(kid, "ES384", ec.generate_private_key(ec.SECP384R1()))


def make_rs384_key(kid: str, bits: int = 2048) -> SigningKey:
    """bits below 2048 only to test that such keys are refused."""
    return SigningKey(kid, "RS384", rsa.generate_private_key(public_exponent=65537, key_size=bits))


def mint(
    key: SigningKey,
    *,
    iss: str,
    aud: str | list[str],
    lifetime: int = 300,
    jti: str | None = None,
    headers: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """A signed client JWT: iat=now, exp=now+lifetime, a random jti, header kid/typ from the key.

    `headers` and `claims` are merged over those defaults; a value of None removes that entry
    (to test missing claims or header parameters).
    """
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "iss": iss,
        "aud": aud,
        "iat": issued,
        "exp": issued + lifetime,
        "jti": jti or str(uuid.uuid4()),
        **(claims or {}),
    }
    header: dict[str, Any] = {"kid": key.kid, "typ": "JWT", **(headers or {})}
    payload = {k: v for k, v in payload.items() if v is not None}
    header = {k: v for k, v in header.items() if v is not None}
    with warnings.catch_warnings():
        # Deliberately weak keys exist only to be refused; PyJWT warns when signing with them.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(payload, key.private_key, algorithm=key.alg, headers=header)


class JwksServer:
    """Serve JWK Sets over HTTP on 127.0.0.1 (a free port) from a daemon thread; a context manager."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._responses: dict[str, tuple[int, bytes, dict[str, str], bool]] = {}
        self._hits: dict[str, int] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # shutdown() returns within one poll interval; the join bound is a safety net.
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def publish(self, path: str, jwks: dict[str, Any]) -> None:
        self.publish_raw(path, json.dumps(jwks).encode(), headers={"Content-Type": "application/json"})

    def publish_raw(
        self, path: str, body: bytes, status: int = 200, headers: dict[str, str] | None = None, *, sized: bool = True
    ) -> None:
        """Any response, to test fetch failures (status, size, redirects, non-JSON).

        sized=False leaves out Content-Length: the body then ends when the connection closes (HTTP/1.0).
        """
        with self._lock:
            self._responses[path] = (status, body, headers or {}, sized)

    def hits(self, path: str) -> int:
        with self._lock:
            return self._hits.get(path, 0)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                with server._lock:
                    server._hits[path] = server._hits.get(path, 0) + 1
                    status, body, headers, sized = server._responses.get(path, (404, b"", {}, True))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if sized:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        return Handler
