"""Shared helpers for tests against live servers on loopback: gunicorn replicas, nginx in front, load.

Everything is bounded in time and binds 127.0.0.1 only. Every gunicorn gets TRIAGE_API_OPEN=true (/v1
without credentials is allowed on loopback only) and runs deploy/gunicorn.conf.py, in its own session
(process group = master pid) so a test can kill a whole replica with os.killpg.

    with ExitStack() as stack:
        replicas = start_replicas(stack, tmp_path, 3, {"WEB_CONCURRENCY": "2"})
        proxy = start_nginx(stack, tmp_path / "nginx", [r.address for r in replicas])
        load = LoadRun(proxy.port, triage_jobs(300), threads=8).start()
        stack.callback(load.stop)  # a failing test stops its load first
        outcomes = load.join()

Leaving the ExitStack stops nginx and every replica still running (SIGTERM, bounded wait, then SIGKILL
of the process group) and fails the test if a replica did not exit with 0 after SIGTERM. One replica
alone, stopped the same way: `with running(tmp_path, {"WEB_CONCURRENCY": "2"}) as server: ...`. The
benchmark (bench/http.py) starts its servers with `running` too: its own app (`app=`), and the time from
start to the first 200 from /readyz (`Replica.ready_s`) as the cold start.
"""

from __future__ import annotations

import contextlib
import functools
import grp
import http.client
import importlib.util
import itertools
import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 30.0  # a replica answering /readyz, nginx accepting connections
STOP_TIMEOUT = 30.0  # after SIGTERM (gunicorn.conf.py's graceful_timeout is 25 s unless the env says less)
REQUEST_TIMEOUT = 10.0  # any single request once the servers are up
SERVICE_APP = "service:create_app()"
GUNICORN_COMMAND = (sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", SERVICE_APP)
NGINX_INSTALL = (
    f"{'' if os.geteuid() == 0 else 'sudo '}apt-get install -y --no-install-recommends nginx-light"
    " (or: bash tools/ensure-debian-packages.sh nginx)"
)


# --- ports, processes -------------------------------------------------------------------------------


def request_id(label: str) -> str:
    """A well-formed X-Request-ID (a UUID, as service/logs.py accepts) that stands for `label`, always the same."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"legraise-test:{label}"))


def free_port() -> int:
    """A port free on 127.0.0.1 right now (another process could still take it before we bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll predicate until it returns something truthy (returned) or timeout passes (returns None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def child_pids(pid: int) -> list[int]:
    """Live (not zombie) children of pid, from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(entry.name))
    return sorted(children)


def process_gone(pid: int) -> bool:
    """The process no longer runs (absent, or a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].split()[0] in ("Z", "X")


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
    return inodes


def _tcp_table() -> list[tuple[int, int, str, int, str]]:
    """(local port, remote port, state, rx_queue, inode) of every IPv4 TCP socket."""
    rows = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        rx_queue = int(fields[4].split(":")[1], 16)
        rows.append((local_port, remote_port, fields[3], rx_queue, fields[9]))
    return rows


TCP_LISTEN = "0A"


def connections_of(pid: int, port: int) -> set[int]:
    """Client (remote) ports of the accepted TCP connections to `port` that process pid holds open."""
    inodes = _socket_inodes(pid)
    return {
        remote
        for local, remote, state, _, inode in _tcp_table()
        if local == port and state != TCP_LISTEN and inode in inodes
    }


def holds_listener(pid: int, port: int) -> bool:
    """Process pid has the listening socket of `port` open."""
    inodes = _socket_inodes(pid)
    return any(local == port and state == TCP_LISTEN and inode in inodes for local, _, state, _, inode in _tcp_table())


def accept_backlog(port: int) -> int:
    """Connections the kernel completed on `port` that no process has accepted yet (-1: nobody listens)."""
    queues = [rx for local, _, state, rx, _ in _tcp_table() if local == port and state == TCP_LISTEN]
    return sum(queues) if queues else -1


def pending_requests(pid: int, port: int) -> int:
    """Accepted connections to `port` held by pid with request bytes the process has not read yet."""
    inodes = _socket_inodes(pid)
    return sum(
        1
        for local, _, state, rx, inode in _tcp_table()
        if local == port and state != TCP_LISTEN and inode in inodes and rx > 0
    )


# --- gunicorn replicas --------------------------------------------------------------------------------


@dataclass
class Replica:
    """One gunicorn master (and its workers) on 127.0.0.1:port, in its own process group."""

    name: str
    port: int
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str]
    spawned_at: float = 0.0  # time.perf_counter() just before the process started
    ready_s: float | None = None  # from spawned_at to the first 200 from /readyz (set by wait_ready)

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def worker_pids(self) -> list[int]:
        return child_pids(self.pid) if self.running() else []

    def wait_workers(self, count: int, exclude: Iterable[int] = (), timeout: float = 15.0) -> list[int]:
        """Wait until exactly `count` workers run, none of them in `exclude`; their pids."""
        excluded = set(exclude)

        def settled() -> list[int] | None:
            pids = self.worker_pids()
            return pids if len(pids) == count and not excluded & set(pids) else None

        pids = wait_until(settled, timeout)
        if pids is None:
            pytest.fail(f"{self.name}: not {count} workers within {timeout:.0f} s (now {self.worker_pids()})")
        return pids

    def crash_worker(
        self, busy: Callable[[set[int]], bool] | None = None, busy_timeout: float = 5.0
    ) -> tuple[int, set[int], float]:
        """SIGKILL the worker holding the most connections, with a request in flight on it; replacing it
        is the master's business. Returns (pid, client ports of its connections, time.time() once dead).

        The worker is stopped (SIGSTOP) first, so the connections it holds cannot change between reading
        them and killing it. It stays stopped until a request is in flight on one of them (at most
        busy_timeout): a request waits unread in one of its sockets, or busy(client ports) says so (the
        client knows which of its connections await an answer: LoadRun.busy).
        """
        workers = self.wait_workers(int(self.env.get("WEB_CONCURRENCY", "2")))  # gunicorn.conf.py's default
        victim = max(workers, key=lambda pid: len(connections_of(pid, self.port)))
        os.kill(victim, signal.SIGSTOP)
        try:
            held = connections_of(victim, self.port)

            def caught() -> bool:
                return pending_requests(victim, self.port) > 0 or (busy is not None and busy(held))

            wait_until(caught, busy_timeout, interval=0.01)
        finally:
            os.kill(victim, signal.SIGKILL)
        if not wait_until(lambda: process_gone(victim), 10):
            pytest.fail(f"worker {victim} survived SIGKILL")
        return victim, held, time.time()

    def kill_group(self) -> None:
        """SIGKILL the master and every worker at once (the replica "dies"), then reap the master."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM the master, wait up to timeout; then SIGKILL the group and fail. The exit code."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            pytest.fail(f"{self.name} did not stop within {timeout:.0f} s of SIGTERM; log:\n{self.log_text()[-4000:]}")

    def ensure_stopped(self) -> None:
        """Cleanup: stop it if still running; fail if SIGTERM did not give a clean exit."""
        if not self.running():
            return
        code = self.terminate()
        assert code == 0, f"{self.name} exited with {code} after SIGTERM; log:\n{self.log_text()[-4000:]}"


def replica_env(
    port: int, directory: Path, overrides: dict[str, str] | None = None, clean_env: bool = False
) -> dict[str, str]:
    """The environment of a replica: this one's (without any TRIAGE_* setting if clean_env), then ours."""
    inherited = {k: v for k, v in os.environ.items() if not (clean_env and k.startswith("TRIAGE_"))}
    env = {
        **inherited,
        "BIND": f"{LOOPBACK}:{port}",
        "TRIAGE_API_OPEN": "true",  # /v1 without credentials: loopback only
        "PROMETHEUS_MULTIPROC_DIR": str(directory / "prometheus"),  # one per replica, never shared
        **(overrides or {}),
    }
    if not env["BIND"].startswith(f"{LOOPBACK}:"):
        raise ValueError(f"live tests bind {LOOPBACK} only, not {env['BIND']}")
    return env


def spawn_replica(
    directory: Path,
    name: str,
    overrides: dict[str, str] | None = None,
    *,
    port: int | None = None,
    clean_env: bool = False,
    app: str = SERVICE_APP,
) -> Replica:
    """Start gunicorn (not waiting for it); logs to directory/<name>.log.

    port: one chosen beforehand with free_port() (when a setting must name the server's own URL);
    clean_env: see replica_env; app: the WSGI app gunicorn loads (the benchmark adds a control endpoint).
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "prometheus").mkdir(exist_ok=True)
    port = port or free_port()
    env = replica_env(port, directory, overrides, clean_env)
    log_path = directory / f"{name}.log"
    with log_path.open("wb") as log_file:
        spawned_at = time.perf_counter()
        process = subprocess.Popen(
            (*GUNICORN_COMMAND[:-1], app),
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Replica(name=name, port=port, process=process, log_path=log_path, env=env, spawned_at=spawned_at)


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})  # leave no idle connection in a worker
        with conn.getresponse() as response:
            return response.status, response.read()
    finally:
        conn.close()


def wait_ready(replica: Replica, timeout: float = START_TIMEOUT, interval: float = 0.1) -> None:
    """Poll /readyz every `interval` s until it answers 200 (replica.ready_s says when); fail if it never does."""
    last = "no attempt"

    def ready() -> bool:
        nonlocal last
        if not replica.running():
            last = f"exited with code {replica.process.returncode}"
            raise _GaveUp
        try:
            status, _ = http_get(replica.port, "/readyz")
        except OSError as exc:
            last = type(exc).__name__
            return False
        last = f"/readyz answered {status}"
        if status == 200:
            replica.ready_s = time.perf_counter() - replica.spawned_at
        return status == 200

    with contextlib.suppress(_GaveUp):
        if wait_until(ready, timeout, interval=interval):
            return
    pytest.fail(f"{replica.name} not ready within {timeout:.0f} s ({last}); log:\n{replica.log_text()[-4000:]}")


class _GaveUp(Exception):
    pass


@contextlib.contextmanager
def running(
    directory: Path,
    overrides: dict[str, str] | None = None,
    name: str = "gunicorn",
    *,
    port: int | None = None,
    clean_env: bool = False,
    app: str = SERVICE_APP,
    ready_timeout: float = START_TIMEOUT,
    ready_interval: float = 0.1,
) -> Iterator[Replica]:
    """One replica, ready on entry (killed if it never gets ready); stopped on exit with ensure_stopped,
    which fails unless SIGTERM gave exit code 0. port, clean_env, app: see spawn_replica; ready_*: wait_ready's."""
    replica = spawn_replica(directory, name, overrides, port=port, clean_env=clean_env, app=app)
    try:
        wait_ready(replica, ready_timeout, ready_interval)
    except BaseException:
        replica.kill_group()
        raise
    try:
        yield replica
    finally:
        replica.ensure_stopped()


def start_replicas(
    stack: contextlib.ExitStack, directory: Path, count: int, overrides: dict[str, str] | None = None
) -> list[Replica]:
    """Start `count` replicas in parallel, wait for each /readyz; the stack stops them."""
    replicas = []
    for number in range(1, count + 1):
        replica = spawn_replica(directory / f"replica{number}", f"replica{number}", overrides)
        stack.callback(replica.ensure_stopped)
        replicas.append(replica)
    for replica in replicas:
        wait_ready(replica)
    return replicas


# --- nginx ----------------------------------------------------------------------------------------------


def nginx_binary() -> str:
    """The nginx executable; without one, fail under CI and skip elsewhere, naming the install command."""
    found = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)), None
    )
    if found:
        return found
    message = f"nginx is not installed; install it with: {NGINX_INSTALL}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@functools.cache
def nginx_renderer() -> Any:
    """deploy/nginx/render.py as a module (deploy/ is not a package)."""
    path = ROOT / "deploy" / "nginx" / "render.py"
    spec = importlib.util.spec_from_file_location("legraise_nginx_render", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Nginx:
    port: int
    directory: Path
    process: subprocess.Popen
    upstreams: list[str]

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.directory / "access.log"

    def error_text(self) -> str:
        parts = []
        for name in ("error.log", "nginx.out"):
            with contextlib.suppress(OSError):
                parts.append((self.directory / name).read_text(encoding="utf-8", errors="replace"))
        return "\n".join(parts)

    def access_entries(self) -> list[dict[str, Any]]:
        """The access log, one dict per request (deploy/nginx/nginx.conf's `triage` format)."""
        if not self.access_log.exists():
            return []
        return json_lines(self.access_log.read_text(encoding="utf-8"))

    def stop(self) -> None:
        """Graceful stop (SIGQUIT), bounded; then SIGKILL the group."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)


# Load tests send thousands of requests a second from one address: the per-client limits are lifted
# for them, and a test of the limits passes its own (start_nginx(..., limits=...)).
NO_CLIENT_LIMITS = {"RATE_LIMIT": "100000r/s", "RATE_BURST": "100000", "CONN_LIMIT": "4096"}


def render_nginx(
    directory: Path,
    port: int,
    upstreams: Sequence[str],
    worker_processes: int = 1,
    limits: dict[str, str] | None = None,
) -> Path:
    """Write directory/nginx.conf: the deploy template with every path inside directory."""
    render = nginx_renderer()
    (directory / "temp").mkdir(parents=True, exist_ok=True)
    user = f"{pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"  # only used as root
    values = {
        **render.runtime_paths(directory),
        "LISTEN": f"{LOOPBACK}:{port}",
        "UPSTREAM_SERVERS": render.upstream_lines(upstreams),
        "WORKER_PROCESSES": str(worker_processes),
        "NGINX_USER": user,
        "METRICS": render.DEFAULTS["METRICS"],
        **NO_CLIENT_LIMITS,
        **(limits or {}),
    }
    conf = directory / "nginx.conf"
    conf.write_text(render.render(values), encoding="utf-8")
    return conf


def start_nginx(
    stack: contextlib.ExitStack,
    directory: Path,
    upstreams: Sequence[str],
    worker_processes: int = 1,
    limits: dict[str, str] | None = None,
) -> Nginx:
    """Render the template into directory and run `nginx -p directory -c nginx.conf -g 'daemon off;'`."""
    binary = nginx_binary()
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = render_nginx(directory, port, upstreams, worker_processes, limits)
    with (directory / "nginx.out").open("wb") as out:
        process = subprocess.Popen(
            [binary, "-p", str(directory), "-c", str(conf), "-g", "daemon off;"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proxy = Nginx(port=port, directory=directory, process=process, upstreams=list(upstreams))
    stack.callback(proxy.stop)

    def accepting() -> bool:
        if process.poll() is not None:
            raise _GaveUp
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1):
                return True
        except OSError:
            return False

    with contextlib.suppress(_GaveUp):
        if wait_until(accepting, START_TIMEOUT):
            return proxy
    pytest.fail(f"nginx did not start (exit code {process.poll()}):\n{proxy.error_text()[-4000:]}")


def served_by(entry: dict[str, Any]) -> str:
    """The upstream that gave the final answer ($upstream_addr lists every one tried, "a, b")."""
    return entry["upstream_addr"].split(",")[-1].strip()


def tried(entry: dict[str, Any]) -> list[str]:
    """Every upstream nginx tried for this request, in order."""
    return [address.strip() for address in entry["upstream_addr"].split(",")]


# --- expected answers, request mixes -----------------------------------------------------------------


@functools.cache
def _knowledge() -> Any:
    from service.knowledge import load_knowledge

    return load_knowledge()


def engine_answer(request: dict[str, Any]) -> Any:
    """What /v1/triage must answer for this body: the engine's own result, as JSON would carry it."""
    from service.engine import evaluate

    return json.loads(json.dumps(evaluate(_knowledge(), request)))


def clinical_findings() -> list[dict[str, Any]]:
    """A realistic mix: every scenario of tests/test_clinical_rules.py, as complete exams."""
    from tests.clinical_cases import CASES
    from tests.scenarios import exam

    return [exam(case.changes) for case in CASES]


@dataclass(frozen=True)
class Job:
    """One request of a load run and the JSON answer it must get."""

    method: str
    path: str
    body: bytes | None
    expected: Any


def triage_jobs(count: int) -> list[Job]:
    """`count` POST /v1/triage calls cycling through clinical_findings(), each with its expected answer."""
    mix = []
    for findings in clinical_findings():
        request = {"findings": findings}
        mix.append(Job("POST", "/v1/triage", json.dumps(request).encode(), engine_answer(request)))
    return list(itertools.islice(itertools.cycle(mix), count))


# --- load ----------------------------------------------------------------------------------------------


@dataclass
class Reply:
    index: int
    thread: int
    request_id: str
    started: float  # time.time() before the connection was checked (and reopened if the server closed it)
    ended: float
    client_port: int | None = None  # local port of the connection the request went out on
    status: int | None = None  # None: no HTTP answer at all (connection refused, reset, closed, timeout)
    complete: bool = False  # the whole body arrived (Content-Length honoured)
    error: str | None = None
    correct: bool = False  # the JSON body equals the job's expected answer

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.complete and self.correct


@dataclass
class LoadRun:
    """A bounded load: `jobs` shared by `threads` client threads, each on one keep-alive connection.

    A thread whose request fails (no answer) records the failure, drops the connection and goes on
    with the next job on a new one: nothing is retried, so every failure shows. `completed` counts
    finished requests while it runs; `stop()` ends it early.
    """

    port: int
    jobs: Sequence[Job]
    threads: int = 8
    id_prefix: str = "load"
    timeout: float = REQUEST_TIMEOUT
    outcomes: list[Reply | None] = field(init=False)
    _next: Iterator[int] = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _stop: threading.Event = field(init=False, default_factory=threading.Event)
    _workers: list[threading.Thread] = field(init=False, default_factory=list)
    _awaiting: dict[int, int] = field(init=False, default_factory=dict)  # thread -> client port
    completed: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.outcomes = [None] * len(self.jobs)
        self._next = iter(range(len(self.jobs)))

    def start(self) -> LoadRun:
        for number in range(self.threads):
            thread = threading.Thread(target=self._run, args=(number,), name=f"load-{number}", daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait_completed(self, count: int, timeout: float) -> None:
        if not wait_until(lambda: self.completed >= count or not self.alive(), timeout, interval=0.005):
            pytest.fail(f"load: only {self.completed} of {count} requests done within {timeout:.0f} s")

    def busy(self, client_ports: set[int]) -> bool:
        """A request sent on one of these connections (client ports) awaits its answer right now."""
        with self._lock:
            return bool(client_ports & set(self._awaiting.values()))

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self._workers)

    def join(self, timeout: float = 60.0) -> list[Reply]:
        deadline = time.monotonic() + timeout
        for thread in self._workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.alive():
            self.stop()
            pytest.fail(f"load did not finish within {timeout:.0f} s ({self.completed} requests done)")
        return [outcome for outcome in self.outcomes if outcome is not None]

    def _take(self) -> int | None:
        if self._stop.is_set():
            return None
        with self._lock:
            return next(self._next, None)

    def _run(self, number: int) -> None:
        conn: http.client.HTTPConnection | None = None
        try:
            while (index := self._take()) is not None:
                started = time.time()  # before the check: a connection dead by then is never used
                if conn is None or _dropped(conn):
                    if conn is not None:
                        conn.close()
                    conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=self.timeout)
                outcome = self._one(conn, index, number, started)
                self.outcomes[index] = outcome
                if outcome.status is None:
                    conn.close()
                    conn = None
                with self._lock:
                    self.completed += 1
        finally:
            if conn is not None:
                conn.close()

    def _one(self, conn: http.client.HTTPConnection, index: int, number: int, started: float) -> Reply:
        job = self.jobs[index]
        rid = request_id(f"{self.id_prefix}-{index}")
        headers = {"X-Request-ID": rid}
        if job.body is not None:
            headers["Content-Type"] = "application/json"
        outcome = Reply(index=index, thread=number, request_id=rid, started=started, ended=0.0)
        try:
            if conn.sock is None:
                conn.connect()
            outcome.client_port = conn.sock.getsockname()[1]
            with self._lock:
                self._awaiting[number] = outcome.client_port
            conn.request(job.method, job.path, body=job.body, headers=headers)
            with conn.getresponse() as response:
                outcome.status = response.status
                body = response.read()  # IncompleteRead if the body is cut short
                outcome.complete = True
            try:
                outcome.correct = json.loads(body) == job.expected
            except ValueError:
                outcome.correct = False
        except (OSError, http.client.HTTPException) as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._awaiting.pop(number, None)
        outcome.ended = time.time()
        return outcome


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """The idle keep-alive connection was closed by the server (readable means EOF or reset)."""
    if conn.sock is None:
        return False
    readable, _, _ = select.select([conn.sock], [], [], 0)
    return bool(readable)


def summarize(outcomes: Sequence[Reply], limit: int = 10) -> str:
    """A short account of the failed requests, for assertion messages."""
    bad = [o for o in outcomes if not o.ok]
    lines = [f"{len(bad)} of {len(outcomes)} requests failed"]
    lines += [
        f"  {o.request_id}: status={o.status} complete={o.complete} correct={o.correct} error={o.error}"
        for o in bad[:limit]
    ]
    return "\n".join(lines)


# --- raw HTTP -------------------------------------------------------------------------------------------


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response from sock (status, headers, body); raises if it is cut short."""
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
        body = response.read()  # checks Content-Length / chunking: IncompleteRead if cut short
        return response.status, dict(response.getheaders()), body
    finally:
        response.close()


def json_lines(text: str, strict: bool = False) -> list[dict[str, Any]]:
    """Every line that starts with "{" parsed as JSON (other lines, e.g. tracebacks, skipped).

    strict: such a line that is not valid JSON fails the test instead of being skipped (one that is
    valid is an object: it starts with "{").
    """
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError as exc:
            if strict:
                pytest.fail(f"log line {number} is not valid JSON ({exc}): {line[:200]}")
            continue
        events.append(event)
    return events
