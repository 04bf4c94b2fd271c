"""Where the JWT ids already accepted are remembered, shared by every worker (and replica) that must refuse them.

CDS Hooks asks that a token's `jti` be used once. A replay can reach any gunicorn worker or any
replica, so the memory of seen ids must be shared by all of them:
- `sqlite:///<path>`: one file on the host, opened by every worker; `deploy/gunicorn.conf.py` creates
  one per server when TRIAGE_REPLAY_STORE is empty. Enough for one replica (one pod).
- `redis://...` or `rediss://...`: one Redis for every replica (`SET NX` with an expiry).
An empty setting outside gunicorn (tests, one process) is an SQLite database in that process's memory.

Every store fails closed: if it cannot answer, `ReplayStoreUnavailable` is raised and the caller
refuses the call; a token is never accepted because the store was down.
"""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3
import threading
from typing import Protocol
from urllib.parse import urlsplit

import redis

# How long a store may take to answer before the call is refused: an EHR waits on it.
TIMEOUT_SECONDS = 0.5
SCHEMES = ("sqlite", "redis", "rediss")


class ReplayStoreUnavailable(Exception):
    """The store could not be asked; the token must be refused (fail closed)."""


class ReplayStore(Protocol):
    def first_use(self, iss: str, jti: str, forget_at: float, now: float) -> bool:
        """Record (iss, jti) until `forget_at` (epoch seconds, `now` being the verifier's clock); False if it
        was already recorded. Raises ReplayStoreUnavailable when the store cannot answer."""


def open_store(url: str) -> ReplayStore:
    """The store a TRIAGE_REPLAY_STORE value names; ValueError (never echoing it: it may hold a password)."""
    scheme = urlsplit(url).scheme if url else "sqlite"
    if scheme not in SCHEMES:
        raise ValueError(f"TRIAGE_REPLAY_STORE: use sqlite:///<path>, redis:// or rediss:// (not {scheme or '?'}://)")
    if scheme == "sqlite":
        path = url[len("sqlite://") :] if url else ""
        if url and not path.startswith("/"):
            raise ValueError("TRIAGE_REPLAY_STORE: sqlite needs an absolute path, sqlite:///<path>")
        return SqliteReplayStore(path or ":memory:")
    return RedisReplayStore(url)


def _key(iss: str, jti: str) -> str:
    # A fixed-size key whatever the token carries; the pair, not either part alone, must be unique.
    return hashlib.sha256(f"{iss}\0{jti}".encode()).hexdigest()


class SqliteReplayStore:
    """One SQLite file shared by the processes of one host; each process opens its own connection."""

    def __init__(self, path: str):
        self._path = path
        self._lock = threading.Lock()
        self._pid = -1
        self._db: sqlite3.Connection | None = None
        self._next_purge = 0.0
        if path != ":memory:":  # a bad path stops start-up, not the first call
            try:
                _open(path).close()  # no connection is kept: gunicorn forks workers from this process
            except sqlite3.Error as exc:
                raise ValueError(f"TRIAGE_REPLAY_STORE: the SQLite file cannot be opened ({exc})") from None

    def first_use(self, iss: str, jti: str, forget_at: float, now: float) -> bool:
        try:
            with self._lock:
                db = self._connection()
                with db:  # one transaction: the purge and the insert commit together
                    if now >= self._next_purge:  # keeps the file small; correctness does not depend on it
                        db.execute("DELETE FROM seen WHERE forget_at <= ?", (now,))
                        self._next_purge = now + 10
                    inserted = db.execute(  # a row whose time is up counts as not there
                        "INSERT INTO seen (key, forget_at) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                        " SET forget_at = excluded.forget_at WHERE seen.forget_at <= ?",
                        (_key(iss, jti), forget_at, now),
                    ).rowcount
        except sqlite3.Error as exc:
            raise ReplayStoreUnavailable(type(exc).__name__) from None
        return inserted == 1

    def _connection(self) -> sqlite3.Connection:
        # One connection per process, opened there: an SQLite connection must not cross a fork.
        if self._db is None or self._pid != os.getpid():
            self._db, self._pid = _open(self._path), os.getpid()
        return self._db


def _open(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)
    if path != ":memory:":
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # a crash may forget the last ids; tokens expire anyway
    db.execute("CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, forget_at REAL NOT NULL)")
    db.isolation_level = "IMMEDIATE"  # take the write lock at BEGIN: no upgrade deadlocks
    return db


class RedisReplayStore:
    """One Redis shared by every replica: SET NX with an expiry, so Redis itself forgets old ids."""

    PREFIX = "legraise:jti:"

    def __init__(self, url: str):
        try:
            self._client = redis.Redis.from_url(
                url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS, retry_on_timeout=False
            )
        except ValueError:
            raise ValueError("TRIAGE_REPLAY_STORE: not a usable redis:// URL") from None

    def first_use(self, iss: str, jti: str, forget_at: float, now: float) -> bool:
        ttl = max(1, math.ceil(forget_at - now))
        try:
            return bool(self._client.set(self.PREFIX + _key(iss, jti), b"1", nx=True, ex=ttl))
        except redis.RedisError as exc:
            raise ReplayStoreUnavailable(type(exc).__name__) from None
