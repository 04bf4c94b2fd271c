"""Who may call /v1/*: API keys (stored as SHA-256 hashes) and/or bearer JWTs, each with scopes.

Plain Python: the Flask side (service/guard.py) asks `AccessPolicy.authenticate` and maps the
outcome to 401 / 403. Credentials never appear in an exception, a log line or a response.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from service.cds.trust import TokenRejected, TokenVerifier
from service.knowledge.yamlfile import load_yaml

SCOPES = frozenset({"triage", "knowledge", "metrics", "docs"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class Unauthenticated(Exception):
    """No usable credential (401). reason is a short code; key_id names a known but revoked key."""

    def __init__(self, reason: str, key_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.key_id = key_id


@dataclass(frozen=True)
class ApiKey:
    id: str
    sha256: bytes
    scopes: frozenset[str]
    revoked: bool = False


@dataclass(frozen=True)
class Caller:
    id: str  # key id, JWT iss|sub, or "open"
    scopes: frozenset[str]


OPEN_CALLER = Caller("open", SCOPES)


def key_hash(key: str) -> str:
    """What goes into the keys file for a key (hex SHA-256 of its UTF-8 bytes)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def load_api_keys(path: str | Path) -> tuple[ApiKey, ...]:
    """{"keys": [{"id", "sha256", "scopes": [...], "revoked": false}]}; every problem is listed."""
    try:
        raw = load_yaml(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    except yaml.YAMLError as exc:  # the problem and line only: never a snippet of the file
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path}: not valid YAML{line} ({getattr(exc, 'problem', None) or 'parse error'})") from None
    problems: list[str] = []
    keys: list[ApiKey] = []
    entries = raw.get("keys") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or set(raw) - {"keys"}:
        raise ValueError(f"{path}: expected a mapping with one key, 'keys', holding a list")
    for index, entry in enumerate(entries):
        where = f"keys[{index}]"
        if not isinstance(entry, dict) or set(entry) - {"id", "sha256", "scopes", "revoked"}:
            problems.append(f"{where}: allowed fields are id, sha256, scopes, revoked")
            continue
        key_id, digest, scopes = entry.get("id"), str(entry.get("sha256", "")), entry.get("scopes")
        if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
            problems.append(f"{where}: id must match {_KEY_ID.pattern}")
        if not _HEX64.match(digest):
            problems.append(f"{where}: sha256 must be 64 lower-case hex digits (the key itself is never stored)")
        if not isinstance(scopes, list) or not scopes or set(scopes) - SCOPES:
            problems.append(f"{where}: scopes must be a non-empty list from {sorted(SCOPES)}")
        if not isinstance(entry.get("revoked", False), bool):
            problems.append(f"{where}: revoked must be true or false")
        if not problems:
            keys.append(ApiKey(key_id, bytes.fromhex(digest), frozenset(scopes), entry.get("revoked", False)))
    ids = [k.id for k in keys]
    if len(set(ids)) != len(ids):
        problems.append("key ids must be unique")
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return tuple(keys)


@dataclass(frozen=True)
class AccessPolicy:
    open: bool  # explicitly configured open: every caller has every scope
    keys: tuple[ApiKey, ...] = ()
    verifier: TokenVerifier | None = None
    audience: str = ""

    @property
    def has_credentials(self) -> bool:
        return bool(self.keys) or self.verifier is not None

    def authenticate(self, api_key: str | None, authorization: str | None) -> Caller:
        if self.open:
            return OPEN_CALLER
        if api_key is not None:
            return self._by_key(api_key)
        if authorization is not None and self.verifier is not None:
            return self._by_token(authorization)
        raise Unauthenticated("missing")

    def _by_key(self, presented: str) -> Caller:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = None
        for key in self.keys:  # compare with every key, in constant time, so timing says nothing
            if hmac.compare_digest(digest, key.sha256):
                found = key
        if found is None:
            raise Unauthenticated("unknown_key")
        if found.revoked:
            raise Unauthenticated("revoked_key", found.id)
        return Caller(found.id, found.scopes)

    def _by_token(self, authorization: str) -> Caller:
        assert self.verifier is not None
        try:
            claims = self.verifier.verify(authorization, self.audience)
        except TokenRejected as exc:
            raise Unauthenticated(f"jwt_{exc.reason}") from None
        return Caller(f"jwt:{claims['iss']}", _scopes(claims))


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    """OAuth 2.0 `scope` (space-separated, RFC 8693) or `scp` (a list); unknown scopes are ignored."""
    raw = claims.get("scope", claims.get("scp", ""))
    items = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return frozenset(s for s in items if isinstance(s, str)) & SCOPES
