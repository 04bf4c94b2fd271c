"""A CDS client JWT is used once, whichever worker or replica a replay reaches (issue 20, item 2).

The store (service/auth/replay.py) on its own, then real gunicorn: two workers sharing the default
SQLite file, and two replicas sharing a real redis-server that is stopped mid-test (fail closed).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from service.auth.replay import ReplayStoreUnavailable, SqliteReplayStore, open_store
from tests.fhir_cases import call_for
from tests.jwt_helpers import SigningKey, make_es384_key, mint
from tests.live import LOOPBACK, free_port, json_lines, request_id, running, start_replicas, wait_until
from tests.redis_server import RedisServer
from tests.scenarios import exam

pytestmark = pytest.mark.live

ISSUER = "https://ehr.test.invalid/"
SERVICE = "/cds-services/leg-raise-triage"
TIMEOUT = 5
MIN_REPLAYS = 20
NOW = 1_800_000_000.0


# --- the store ---------------------------------------------------------------------------------------


def test_sqlite_store_remembers_a_pair_until_its_time_is_up() -> None:
    store = SqliteReplayStore(":memory:")
    assert store.first_use("iss-a", "j1", NOW + 60, NOW)
    assert not store.first_use("iss-a", "j1", NOW + 60, NOW + 59)
    assert store.first_use("iss-b", "j1", NOW + 60, NOW)  # the pair is the key, not the jti alone
    assert store.first_use("iss-a", "j1", NOW + 200, NOW + 60)  # forgotten once its time is up


def _first_use_in_child(path: str, results: multiprocessing.Queue) -> None:
    store = SqliteReplayStore(path)
    results.put((store.first_use("iss", "shared", NOW + 60, NOW), store.first_use("iss", "child", NOW + 60, NOW)))


def test_sqlite_file_is_shared_by_the_processes_that_open_it(tmp_path: Path) -> None:
    path = str(tmp_path / "replay.sqlite3")
    store = SqliteReplayStore(path)
    assert store.first_use("iss", "shared", NOW + 60, NOW)
    context = multiprocessing.get_context("spawn")  # a process of its own, as a gunicorn worker is
    results = context.Queue()
    child = context.Process(target=_first_use_in_child, args=(path, results))
    child.start()
    child.join(30)
    assert results.get(timeout=1) == (False, True)  # the parent's pair is a replay there, its own is new
    assert not store.first_use("iss", "child", NOW + 60, NOW)  # and the child's is a replay here


def test_sqlite_store_fails_closed_when_it_cannot_write(tmp_path: Path) -> None:
    path = str(tmp_path / "replay.sqlite3")
    store = SqliteReplayStore(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the file, past the store's timeout
    try:
        with pytest.raises(ReplayStoreUnavailable):
            store.first_use("iss", "j1", NOW + 60, NOW)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.first_use("iss", "j1", NOW + 60, NOW)  # the refused call was not remembered


@pytest.mark.parametrize(
    "url",
    [
        "memcached://user:s3cret-pw@cache:11211",
        "sqlite://relative/path.db",
        "file:///tmp/x",
        "redis",
        "sqlite:///no-such-directory/replay.sqlite3",
    ],
)
def test_an_unusable_store_setting_stops_start_up_without_echoing_it(url: str) -> None:
    with pytest.raises(ValueError, match="TRIAGE_REPLAY_STORE") as caught:
        open_store(url)
    assert "s3cret" not in str(caught.value) and "relative" not in str(caught.value)


def test_redis_store_sets_once_with_an_expiry_and_fails_closed_when_down(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    try:
        store = open_store(server.url)
        now = time.time()
        assert store.first_use("iss", "j1", now + 90, now)
        assert not store.first_use("iss", "j1", now + 90, now)
        (key,) = redis.Redis.from_url(server.url).keys("legraise:jti:*")
        assert 85 <= redis.Redis.from_url(server.url).ttl(key) <= 90  # Redis forgets it by itself
    finally:
        server.stop()
    with pytest.raises(ReplayStoreUnavailable):
        store.first_use("iss", "j2", now + 90, now)


# --- through gunicorn --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SigningKey]:
    folder = tmp_path_factory.mktemp("replay-trust")
    key = make_es384_key("k1")
    (folder / "jwks.json").write_text(json.dumps({"keys": [key.public_jwk()]}))
    (folder / "trust.yaml").write_text(f"issuers:\n  - iss: {ISSUER}\n    jwks_file: jwks.json\n")
    return folder / "trust.yaml", key


def _post(port: int, token: str, label: str) -> int:
    # A fresh connection for every call: the kernel hands each to whichever worker accepts first.
    headers = {"Authorization": f"Bearer {token}", "X-Request-ID": request_id(label), "Connection": "close"}
    return requests.post(f"http://{LOOPBACK}:{port}{SERVICE}", json=CALL, headers=headers, timeout=TIMEOUT).status_code


CALL = call_for(exam({"bladder": "retention"}))


def _pids(log_text: str, labels: set[str]) -> set[int]:
    ids = {request_id(label) for label in labels}
    return {e["pid"] for e in json_lines(log_text) if e.get("event") == "request" and e.get("request_id") in ids}


def test_a_replay_is_refused_by_every_worker_of_a_replica(tmp_path: Path, trust: tuple[Path, SigningKey]) -> None:
    trust_file, key = trust
    port = free_port()
    env = {
        "WEB_CONCURRENCY": "2",
        "TRIAGE_CDS_TRUST_FILE": str(trust_file),
        "TRIAGE_PUBLIC_BASE_URL": f"http://{LOOPBACK}:{port}",
    }
    with running(tmp_path, env, port=port) as server:
        token = mint(key, iss=ISSUER, aud=f"http://{LOOPBACK}:{port}{SERVICE}")
        assert _post(port, token, "first") == 200
        statuses, sent = [], set()
        for attempt in range(200):  # until both workers have refused it, and at least MIN_REPLAYS times
            sent.add(f"replay-{attempt}")
            statuses.append(_post(port, token, f"replay-{attempt}"))
            if attempt + 1 >= MIN_REPLAYS and len(_pids(server.log_text(), sent)) == 2:
                break
        assert statuses == [401] * len(statuses), statuses
        assert len(_pids(server.log_text(), sent)) == 2, "the replays never reached the second worker"


@contextlib.contextmanager
def _two_replicas_on_redis(tmp_path: Path, trust_file: Path, redis_url: str) -> Iterator[list]:
    env = {
        "TRIAGE_CDS_TRUST_FILE": str(trust_file),
        "TRIAGE_PUBLIC_BASE_URL": "https://cds.test.invalid",  # one public URL, as behind the proxy
        "TRIAGE_REPLAY_STORE": redis_url,
    }
    with contextlib.ExitStack() as stack:
        yield start_replicas(stack, tmp_path, 2, env)


def test_replicas_sharing_redis_refuse_replays_and_fail_closed_without_it(
    tmp_path: Path, trust: tuple[Path, SigningKey]
) -> None:
    trust_file, key = trust
    audience = f"https://cds.test.invalid{SERVICE}"
    redis_server = RedisServer(tmp_path).start()
    try:
        with _two_replicas_on_redis(tmp_path, trust_file, redis_server.url) as replicas:
            token = mint(key, iss=ISSUER, aud=audience)
            assert _post(replicas[0].port, token, "first") == 200
            replays = [_post(replicas[i % 2].port, token, f"replay-{i}") for i in range(MIN_REPLAYS)]
            assert replays == [401] * MIN_REPLAYS, replays

            redis_server.stop()  # mid-test: every call is refused, none is let through
            fresh = [_post(r.port, mint(key, iss=ISSUER, aud=audience), "no-store") for r in replicas * 3]
            replayed = [_post(r.port, token, "no-store-replay") for r in replicas]
            assert fresh + replayed == [503] * (len(fresh) + len(replayed)), fresh + replayed
            assert wait_until(lambda: "replay_store_unavailable" in replicas[1].log_text(), timeout=5)
    finally:
        redis_server.stop()
