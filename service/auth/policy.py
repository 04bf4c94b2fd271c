"""Who may call /v1/*: API keys (stored as SHA-256 hashes) and/or bearer JWTs, each with scopes.

Plain Python: the Flask side (service/auth/guard.py) asks `AccessPolicy.authenticate` and maps the
outcome to 401 / 403. Credentials never appear in an exception, a log line or a response.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marshmallow import validate

from service.auth.tokens import TokenRejected, TokenVerifier
from service.knowledge.schemas import Bool, List, Nested, Str, Strict, shape_problems
from service.knowledge.yamlfile import DataFileError, read_yaml

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


class _KeyEntry(Strict):
    # Messages name the rule, never the value: a sha256 or a pasted key must not reach a log.
    id = Str(required=True, validate=validate.Regexp(_KEY_ID, error="must match {regex}"))
    sha256 = Str(
        required=True,
        validate=validate.Regexp(_HEX64, error="must be 64 lower-case hex digits (the key itself is never stored)"),
    )
    scopes = List(
        Str(validate=validate.OneOf(sorted(SCOPES), error=f"must be one of {', '.join(sorted(SCOPES))}")),
        required=True,
        validate=validate.Length(min=1, error=f"must be a non-empty list from {sorted(SCOPES)}"),
    )
    revoked = Bool()


class KeysFile(Strict):
    """The API-key file: {"keys": [{"id", "sha256", "scopes": [...], "revoked": false}]}."""

    keys = List(Nested(_KeyEntry), required=True)


_INVALID = "invalid API key file:\n  - "


def load_api_keys(path: str | Path) -> tuple[ApiKey, ...]:
    """The keys in the file at `path`; ValueError listing every problem (file, path in it, line)."""
    try:
        doc = read_yaml(path)
    except DataFileError as exc:  # the problem and line only: never a snippet of the file
        raise ValueError(_INVALID + "\n  - ".join(exc.problems)) from None
    problems = shape_problems(KeysFile(), doc, str(path))
    if not problems:  # ids name callers in logs and audit events: one id, one key
        seen: set[str] = set()
        for index, entry in enumerate(doc.data["keys"]):
            if entry["id"] in seen:
                problems.append(
                    f"{path}: keys[{index}].id: used by another key too (line {doc.line(('keys', index, 'id'))})"
                )
            seen.add(entry["id"])
    if problems:
        raise ValueError(_INVALID + "\n  - ".join(problems))
    return tuple(
        ApiKey(e["id"], bytes.fromhex(e["sha256"]), frozenset(e["scopes"]), e.get("revoked", False))
        for e in doc.data["keys"]
    )


@dataclass(frozen=True)
class AccessPolicy:
    open: bool  # explicitly configured open: every caller has every scope
    keys: tuple[ApiKey, ...] = ()
    verifier: TokenVerifier | None = None
    audience: str = ""

    def authenticate(self, api_key: str | None, authorization: str | None) -> Caller:
        if self.open:
            return OPEN_CALLER
        if api_key is not None:
            return self._by_key(api_key)
        if authorization is None or self.verifier is None:
            raise Unauthenticated("missing")
        try:
            claims = self.verifier.verify(authorization, self.audience)
        except TokenRejected as exc:
            raise Unauthenticated(f"jwt_{exc.reason}") from None
        return Caller(f"jwt:{claims['iss']}", _scopes(claims))

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


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    """OAuth 2.0 `scope` (space-separated, RFC 8693) or `scp` (a list); unknown scopes are ignored."""
    raw = claims.get("scope", claims.get("scp", ""))
    items = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return frozenset(s for s in items if isinstance(s, str)) & SCOPES
