"""Verify the JWTs that CDS Hooks 2.0 clients send ("Trusting CDS Clients").

A CDS client (an EHR) signs a short-lived JWT with ES384 or RS384 and sends it as a Bearer token.
The service trusts a fixed list of issuers (see `load_trust_file`); each issuer's public keys come
from a JWK Set published at a URL (its `jwks_url`, or an allow-listed `jku` from the token header)
or from a local file.

Plain Python on purpose (no web framework): the HTTP layer turns `TokenRejected` into a 401.

Limits worth knowing:
- Accepted (issuer, jti) pairs are remembered in a replay store (`service/auth/replay.py`) shared by
  every worker, and by every replica when it is Redis, until the token expires. A store that cannot
  answer refuses the call (`ReplayStoreUnavailable`), it never lets a token through.
- JWK Sets fetched over the network are cached per URL for `jwks_ttl` seconds and a URL is fetched
  at most once every `MIN_REFETCH_INTERVAL` seconds, so an unknown `kid` or a dead JWKS endpoint
  cannot turn every request into an outbound call.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import jwt.exceptions
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.auth.replay import ReplayStore, SqliteReplayStore
from service.jsoncodec import InvalidJSON, parse_strict_json
from service.knowledge.yamlfile import read_yaml

_log = logging.getLogger(__name__)

ALGORITHMS = frozenset({"ES384", "RS384"})  # the only two CDS Hooks allows
MIN_RSA_BITS = 2048
MAX_JWKS_BYTES = 256 * 1024
MAX_TOKEN_CHARS = 16 * 1024  # real client tokens are well under 2 KiB
MIN_REFETCH_INTERVAL = 10.0  # seconds between two fetches of one JWKS URL, whatever the reason
_LOOPBACK_IPS = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))

REASONS = frozenset(
    {
        "missing",  # no Authorization header
        "malformed",  # not "Bearer <jwt>", undecodable JWT, bad typ, other decode errors
        "alg",  # header alg is not ES384/RS384
        "kid",  # no kid in the header, or no key with that kid in the issuer's JWK Set
        "key",  # the key found for kid does not fit the token alg (JWK alg, type, curve, RSA size, use)
        "issuer",  # iss is not a trusted issuer
        "jku",  # jku not allow-listed for the issuer, or the issuer needs a jku and none was sent
        "signature",  # signature does not verify
        "audience",  # aud does not name this endpoint
        "expired",  # exp is past (beyond leeway)
        "iat",  # iat (or nbf) is in the future (beyond leeway)
        "lifetime",  # exp - iat exceeds max_lifetime
        "claims",  # a required claim is missing or has the wrong type
        "replay",  # this (iss, jti) was already accepted and has not expired yet
        "jwks_unavailable",  # the issuer's JWK Set could not be fetched and none is cached
    }
)


class TokenRejected(Exception):
    """A client JWT was refused. `reason` is one of `REASONS`; it never carries token content."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Issuer:
    """A trusted CDS client: its `iss` and where its signing keys come from."""

    iss: str
    jwks_url: str | None = None  # fetched when the token has no jku
    jwks_file: str | None = None  # or a local JWK Set file, read once
    jku: tuple[str, ...] = ()  # jku header values accepted for this issuer (exact string match)


# --- trust file -----------------------------------------------------------------------------------

_ISSUER_KEYS = frozenset({"iss", "jwks_url", "jwks_file", "jku"})


def _url_problem(url: object) -> str | None:
    """Why `url` is not acceptable as a key source, or None. Plain http is for loopback tests only."""
    if not isinstance(url, str) or not url:
        return "must be a non-empty string"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "is not a valid URL"
    if any(ch.isspace() for ch in url) or not host:
        return "is not a valid URL"
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials"
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(host)):
        return None
    return "must be an https URL (http only for localhost, 127.0.0.1 or ::1)"


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host) in _LOOPBACK_IPS
    except ValueError:
        return False


def _issuer_problems(labelled: Iterable[tuple[str, Issuer]]) -> list[str]:
    """Consistency checks shared by `load_trust_file` and `TokenVerifier` (issuers built in code)."""
    problems: list[str] = []
    seen: set[str] = set()
    for where, issuer in labelled:
        if not isinstance(issuer.iss, str) or not issuer.iss:
            problems.append(f"{where}: missing iss (a non-empty string)")
        elif issuer.iss in seen:
            problems.append(f"{where}: duplicate iss {issuer.iss!r}")
        else:
            seen.add(issuer.iss)
        if issuer.jwks_url is not None and issuer.jwks_file is not None:
            problems.append(f"{where}: give jwks_url or jwks_file, not both")
        if issuer.jwks_url is None and issuer.jwks_file is None and not issuer.jku:
            problems.append(f"{where}: needs a key source (jwks_url, jwks_file or jku)")
        if issuer.jwks_url is not None and (why := _url_problem(issuer.jwks_url)):
            problems.append(f"{where}.jwks_url {why}")
        if issuer.jwks_file is not None and (not isinstance(issuer.jwks_file, str) or not issuer.jwks_file):
            problems.append(f"{where}.jwks_file must be a non-empty string")
        if not isinstance(issuer.jku, tuple):
            problems.append(f"{where}.jku must be a tuple of URLs")
        else:
            for j, url in enumerate(issuer.jku):
                if why := _url_problem(url):
                    problems.append(f"{where}.jku[{j}] {why}")
    return problems


def load_trust_file(path: str | os.PathLike) -> list[Issuer]:
    """Read the trusted issuers from a YAML (or JSON) file.

    Shape: ``{"issuers": [{"iss": ..., "jwks_url" | "jwks_file": ..., "jku": [...]}]}``.
    ``jwks_file`` is resolved against the trust file's folder. Any problem (unknown key, missing iss,
    no key source, duplicate iss, non-https URL, missing JWKS file) raises one ValueError listing all.
    """
    path = Path(path)
    # DataFileError (a ValueError) names the problem and where, never a snippet of the file.
    doc = read_yaml(path, f"trust file {path}").data
    if not isinstance(doc, dict):
        raise ValueError(f"trust file {path}: must be a mapping with an 'issuers' list")
    problems = [f"unknown top-level key {key!r}" for key in doc if key != "issuers"]
    entries = doc.get("issuers")
    if not isinstance(entries, list) or not entries:
        problems.append("'issuers' must be a non-empty list")
        entries = []

    labelled: list[tuple[str, Issuer]] = []
    for i, entry in enumerate(entries):
        where = f"issuers[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        problems += [f"{where}: unknown key {key!r}" for key in entry if key not in _ISSUER_KEYS]
        jku = entry.get("jku", [])
        if not isinstance(jku, list):
            problems.append(f"{where}.jku must be a list of URLs")
            jku = []
        jwks_file = entry.get("jwks_file")
        if isinstance(jwks_file, str) and jwks_file:
            resolved = (path.parent / jwks_file).resolve()
            if not resolved.is_file():
                problems.append(f"{where}.jwks_file not found: {resolved}")
            jwks_file = str(resolved)
        issuer = Issuer(iss=entry.get("iss"), jwks_url=entry.get("jwks_url"), jwks_file=jwks_file, jku=tuple(jku))
        labelled.append((where, issuer))
    problems += _issuer_problems(labelled)
    if problems:
        raise ValueError(f"trust file {path}: " + "; ".join(problems))
    return [issuer for _, issuer in labelled]


# --- JWK Sets -------------------------------------------------------------------------------------


class JwksError(Exception):
    """A JWK Set could not be fetched or is not a JWK Set (message: no document content)."""


def download_jwks(url: str, timeout: float = 2.0) -> dict[str, Any]:
    """GET a JWK Set: no redirects, status 200 only, at most MAX_JWKS_BYTES, a JSON object with 'keys'."""
    deadline = time.monotonic() + 4 * timeout  # requests' timeout is per socket read; bound the total too
    try:
        with requests.get(
            url, timeout=timeout, allow_redirects=False, stream=True, headers={"Accept": "application/json"}
        ) as resp:
            if resp.status_code != 200:
                raise JwksError(f"HTTP status {resp.status_code}")
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
                raise JwksError("body too large")
            body = bytearray()
            for chunk in resp.iter_content(chunk_size=16384):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksError("body too large")
                if time.monotonic() > deadline:
                    raise JwksError("too slow")
    except requests.RequestException as exc:
        raise JwksError(type(exc).__name__) from None
    try:
        doc = parse_strict_json(body)
    except InvalidJSON:
        raise JwksError("not JSON") from None
    _check_jwks(doc)
    return doc


def _check_jwks(doc: object) -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksError("not a JWK Set (a JSON object with a 'keys' list)")


def _index_keys(doc: Any) -> dict[str, list[dict[str, Any]]]:
    """A JWK Set's keys by kid (JwksError if it is none); members without a string kid can never be selected."""
    _check_jwks(doc)
    by_kid: dict[str, list[dict[str, Any]]] = {}
    for jwk in doc["keys"]:
        if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str):
            by_kid.setdefault(jwk["kid"], []).append(jwk)
    return by_kid


@dataclass
class _UrlSource:
    """One JWKS URL: the cached keys plus fetch bookkeeping, guarded by its own lock.

    The lock is held during the fetch so concurrent requests wait for one fetch instead of each
    starting their own; other URLs are not blocked.
    """

    url: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    keys: dict[str, list[dict[str, Any]]] | None = None
    fetched_at: float = 0.0  # last successful fetch
    attempted_at: float | None = None  # last attempt, successful or not


# --- verifier -------------------------------------------------------------------------------------


class TokenVerifier:
    """Verify CDS client JWTs against a fixed set of trusted issuers. Thread-safe; share one per process.

    leeway: clock skew allowed on exp/iat/nbf, seconds. max_lifetime: largest accepted exp - iat.
    jwks_ttl: how long a fetched JWK Set is used before fetching it again.
    replay_store: where accepted (iss, jti) pairs are remembered until exp + leeway (default: this
    process's memory); when it cannot answer, verify raises ReplayStoreUnavailable (fail closed).
    clock: seconds since the epoch (injectable for tests). fetch_jwks: ``url -> JWK Set dict`` used for
    every network fetch (default: `download_jwks`); any exception it raises counts as
    the set being unavailable. Local jwks_file sets are read here; a bad one raises ValueError.
    """

    def __init__(
        self,
        issuers: Iterable[Issuer],
        *,
        leeway: int = 30,
        max_lifetime: int = 3600,
        jwks_ttl: int = 300,
        refuse_replay: bool = True,
        replay_store: ReplayStore | None = None,
        clock: Callable[[], float] = time.time,
        fetch_jwks: Callable[[str], dict[str, Any]] | None = None,
    ):
        issuers = list(issuers)
        if problems := _issuer_problems((f"issuers[{i}]", issuer) for i, issuer in enumerate(issuers)):
            raise ValueError("issuers: " + "; ".join(problems))
        if leeway < 0 or max_lifetime <= 0 or jwks_ttl < 0:
            raise ValueError("leeway and jwks_ttl must be >= 0; max_lifetime > 0")
        self._issuers = {issuer.iss: issuer for issuer in issuers}
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._jwks_ttl = jwks_ttl
        # CDS Hooks tokens are one per call; API access tokens are reused for their lifetime.
        self._replay = (replay_store or SqliteReplayStore(":memory:")) if refuse_replay else None
        self._clock = clock
        self._fetch = fetch_jwks or download_jwks

        # Every URL that may ever be fetched is known now (jku values are allow-listed), so this dict
        # is never written after construction and needs no lock.
        self._url_sources = {
            url: _UrlSource(url) for issuer in issuers for url in (issuer.jwks_url, *issuer.jku) if url is not None
        }
        self._file_keys = {
            issuer.iss: _read_jwks_file(issuer.jwks_file) for issuer in issuers if issuer.jwks_file is not None
        }

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """Check the raw Authorization header for a call to `audience` (the endpoint's absolute URL).

        Returns the verified claims; raises TokenRejected otherwise.
        """
        if not isinstance(audience, str) or not audience:
            raise ValueError("audience must be the endpoint's absolute URL")
        token = _bearer_token(authorization)

        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenRejected("malformed") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise TokenRejected("alg")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("kid")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise TokenRejected("malformed")

        iss = unverified.get("iss")
        if not isinstance(iss, str):
            raise TokenRejected("claims")
        issuer = self._issuers.get(iss)
        if issuer is None:
            raise TokenRejected("issuer")

        key = self._key_for(issuer, header, kid, alg)
        claims = self._decode(token, key, alg, audience)
        exp = self._check_times(claims)
        jti = claims["jti"]
        if not jti:  # PyJWT requires a string jti, but lets "" through
            raise TokenRejected("claims")
        # Last, so a refused token is never remembered; no entry outlives max_lifetime + 2 * leeway.
        if self._replay is not None and not self._replay.first_use(iss, jti, exp + self._leeway, self._clock()):
            raise TokenRejected("replay")
        return claims

    # -- keys --

    def _key_for(self, issuer: Issuer, header: dict[str, Any], kid: str, alg: str) -> jwt.PyJWK:
        jku = header.get("jku")
        # Only URLs the operator listed for this issuer: a token must not pick where its keys come from.
        if jku is not None and (not isinstance(jku, str) or jku not in issuer.jku):
            raise TokenRejected("jku")
        url = jku if jku is not None else issuer.jwks_url
        if url is not None:
            candidates = self._url_keys(self._url_sources[url], kid)
        elif issuer.iss in self._file_keys:
            candidates = self._file_keys[issuer.iss].get(kid)
        else:
            raise TokenRejected("jku")  # this issuer's keys are only reachable through a jku
        if not candidates:
            raise TokenRejected("kid")
        return _usable_key(candidates, alg)

    def _url_keys(self, source: _UrlSource, kid: str) -> list[dict[str, Any]] | None:
        with source.lock:
            now = self._clock()
            if source.keys is None or not 0 <= now - source.fetched_at < self._jwks_ttl:
                self._refresh(source, now)  # on failure a previously fetched set stays in use
            if source.keys is None:
                raise TokenRejected("jwks_unavailable")
            found = source.keys.get(kid)
            # An unknown kid may be a key the issuer just rotated in: look once more (rate-limited).
            if not found and self._refresh(source, now):
                found = source.keys.get(kid)
            return found

    def _refresh(self, source: _UrlSource, now: float) -> bool:
        """Fetch the set again unless it was tried too recently. Caller holds source.lock."""
        if source.attempted_at is not None and 0 <= now - source.attempted_at < MIN_REFETCH_INTERVAL:
            return False
        source.attempted_at = now
        try:
            keys = _index_keys(self._fetch(source.url))
        except Exception as exc:  # any failure of the fetch hook means "unavailable", never a crash
            detail = str(exc) if isinstance(exc, JwksError) else type(exc).__name__  # never document content
            _log.warning("JWKS fetch failed for %s: %s", source.url, detail)
            return False
        source.keys, source.fetched_at = keys, now
        return True

    # -- claims --

    def _decode(self, token: str, key: jwt.PyJWK, alg: str, audience: str) -> dict[str, Any]:
        # The key was chosen by this token's own iss and alg, so PyJWT is not asked to compare them again.
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                options={
                    "require": ["iss", "aud", "exp", "iat", "jti"],
                    # Times are checked in _check_times against self._clock (PyJWT reads the wall clock).
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenRejected("signature") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("audience") from None
        except (jwt.MissingRequiredClaimError, jwt.exceptions.InvalidJTIError, jwt.exceptions.InvalidSubjectError):
            raise TokenRejected("claims") from None
        except jwt.InvalidKeyError:
            raise TokenRejected("key") from None
        except jwt.PyJWTError:
            raise TokenRejected("malformed") from None

    def _check_times(self, claims: dict[str, Any]) -> float:
        """exp, after checking exp/iat/nbf against the clock and the lifetime limit."""
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
        if not _is_number(exp) or not _is_number(iat) or (nbf is not None and not _is_number(nbf)):
            raise TokenRejected("claims")
        now = self._clock()
        if exp <= now - self._leeway:
            raise TokenRejected("expired")
        if iat > now + self._leeway or (nbf is not None and nbf > now + self._leeway):
            raise TokenRejected("iat")
        if exp <= iat:
            raise TokenRejected("claims")
        if exp - iat > self._max_lifetime:
            raise TokenRejected("lifetime")
        return exp


def _bearer_token(authorization: str | None) -> str:
    if authorization is None or (isinstance(authorization, str) and not authorization.strip()):
        raise TokenRejected("missing")
    if not isinstance(authorization, str) or len(authorization) > MAX_TOKEN_CHARS:
        raise TokenRejected("malformed")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(ch.isspace() for ch in token):
        raise TokenRejected("malformed")
    return token


def _usable_key(candidates: list[dict[str, Any]], alg: str) -> jwt.PyJWK:
    """The first JWK with this kid that fits alg; 'key' if none does."""
    for jwk in candidates:
        if jwk.get("alg", alg) != alg or jwk.get("use", "sig") != "sig":
            continue
        try:
            # The algorithm is given explicitly: PyJWK would otherwise guess RS256 for an RSA JWK without alg.
            # Its from_jwk refuses a JWK of another kty.
            key = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError:
            continue
        public = key.key
        if alg == "ES384" and isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP384R1):
            return key
        if alg == "RS384" and isinstance(public, rsa.RSAPublicKey) and public.key_size >= MIN_RSA_BITS:
            return key
    raise TokenRejected("key")


def _is_number(value: object) -> bool:
    # NaN compares false with everything, so an `exp: NaN` would never expire: only finite numbers count.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _read_jwks_file(path: str) -> dict[str, list[dict[str, Any]]]:
    try:
        keys = _index_keys(parse_strict_json(Path(path).read_bytes()))
    except OSError as exc:
        raise ValueError(f"jwks_file {path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    except (ValueError, JwksError):
        raise ValueError(f"jwks_file {path}: not a JWK Set (a JSON object with a 'keys' list)") from None
    if not keys:
        raise ValueError(f"jwks_file {path}: no key with a kid")
    return keys
