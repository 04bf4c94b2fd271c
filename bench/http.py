"""The HTTP sections of the benchmark: gunicorn as deployed, loaded by wrk, beside a yardstick.

One helper starts gunicorn the way production does (`python -m gunicorn -c deploy/gunicorn.conf.py
APP`, BIND on a free loopback port, TRIAGE_API_OPEN=true, the production LOG_LEVEL, stdout and
stderr to a log file) and times it to the first 200 from /readyz; bench.cds_hooks uses it too.

- `saturation`: POST /v1/triage against POST /bench/control (bench/app.py), fixed connections,
  alternating rounds; requests/s, p50, p99 and the ratio triage / control.
- `paced`: both endpoints at one offered rate (wrk paced with a Lua delay), p99 and the ratio.
- `batch`: POST /v1/triage/batch (100 cases in one body) against the same 100 cases as single calls.
- `cold_start`: the production app from `python -m gunicorn` to the first 200 from /readyz.

Every wrk run must finish with no failure (non-2xx answer or socket error): MeasurementError if not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.app import CONTROL, wire
from bench.stats import median_interval
from bench.wrk import WrkResult, run_wrk, write_script

ROOT = Path(__file__).resolve().parents[1]
CONF = "deploy/gunicorn.conf.py"
SERVICE_APP = "service:create_app()"
BENCH_APP = "bench.app:create_bench_app()"
TRIAGE = "/v1/triage"
BATCH = "/v1/triage/batch"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class MeasurementError(RuntimeError):
    """A figure could not be taken (server did not start, failed requests, wrong answers)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_settings() -> dict[str, str]:
    """The serving settings in effect (the environment overrides gunicorn.conf.py reads), for the report."""
    return {
        "workers": os.environ.get("WEB_CONCURRENCY", "2"),
        "threads": os.environ.get("GUNICORN_THREADS", "4"),
        "max_requests": os.environ.get("GUNICORN_MAX_REQUESTS", "50000"),
        "log_level": os.environ.get("LOG_LEVEL", "info"),
        "extra_args": os.environ.get("GUNICORN_CMD_ARGS", ""),
    }


@dataclass
class Gunicorn:
    """One gunicorn master and its workers on 127.0.0.1, in its own process group.

    `with Gunicorn(app, workdir) as server:` starts it and waits for /readyz (cold_start_s is the time
    from starting the process to that first 200); leaving stops it (SIGTERM, then SIGKILL the group).
    `env` is added to this process's environment; `port` 0 picks a free one at start.
    """

    app: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    name: str = "gunicorn"
    port: int = 0
    cold_start_s: float = 0.0
    process: subprocess.Popen | None = None
    repeated_runs: int = 0  # wrk runs taken again because one worker had every connection (run_balanced)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> Gunicorn:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        env = {
            **os.environ,
            "BIND": f"127.0.0.1:{self.port}",
            "TRIAGE_API_OPEN": "true",  # /v1 without credentials: allowed on loopback only
            **self.env,
        }
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        command = [sys.executable, "-m", "gunicorn", "-c", CONF, self.app]
        with self.log_path.open("wb") as log:
            started = time.perf_counter()
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self.cold_start_s = self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, started: float) -> float:
        deadline = time.monotonic() + START_TIMEOUT
        session = requests.Session()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MeasurementError(f"{self.name}: gunicorn exited during start-up:\n{self.log_tail()}")
            try:
                if session.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return time.perf_counter() - started
            except requests.RequestException:
                pass
            time.sleep(0.01)
        raise MeasurementError(f"{self.name}: no 200 from /readyz within {START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_text()[-chars:]

    def worker_cpu_ticks(self) -> dict[int, int]:
        """CPU time (clock ticks) used so far by each current worker."""
        if self.process is None:
            return {}
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return {}
        ticks = {}
        for child in children:
            try:
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks[int(child)] = int(fields[11]) + int(fields[12])  # utime + stime
        return ticks

    def worker_boots(self) -> int:
        """Workers booted so far, the first ones included (more than `workers`: some were recycled)."""
        return self.log_text().count("Booting worker")

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- wrk runs ---------------------------------------------------------------------------------------


def checked(result: WrkResult, label: str, server: Gunicorn | None = None) -> WrkResult:
    """The result, or MeasurementError if any request failed."""
    if result.failures or not result.requests:
        kinds = ", ".join(f"{k} {v}" for k, v in result.failure_kinds.items() if v) or "no requests"
        hint = ""
        workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
        if server is not None and (boots := server.worker_boots()) > workers:
            hint = f"; {boots - workers} worker(s) recycled so far (max_requests)"
        raise MeasurementError(f"wrk {label}: {result.failures} of {result.requests} requests failed ({kinds}){hint}")
    return result


BALANCE_ATTEMPTS = 4
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # /proc/<pid>/stat counts CPU time in these
BALANCED_SHARE = 0.5  # the least busy worker used at least half the CPU of the busiest


def run_balanced(server: Gunicorn, script: Path, *, connections: int, seconds: float) -> WrkResult:
    """A wrk run in which every worker took part; at most BALANCE_ATTEMPTS tries.

    wrk opens all its connections in one burst, and on gunicorn's one shared listening socket the
    first worker to wake can accept every one of them: the other workers idle and the run measures
    where the kernel put the connections, not the service. The scripts renew connections as a proxy
    does (bench/wrk.py, RECYCLE_EVERY), which spreads them again within a run; a run that is still
    one-sided is repeated, up to the limit, and counted in `server.repeated_runs` for the report.
    """
    for attempt in range(BALANCE_ATTEMPTS):
        before = server.worker_cpu_ticks()
        result = run_wrk(server.url, script, connections=connections, seconds=seconds)
        after = server.worker_cpu_ticks()
        used = [after[pid] - before[pid] for pid in after if pid in before]
        if before and after.keys() == before.keys():  # no worker recycled during the run
            result = dataclasses.replace(result, worker_cpu_s=sum(used) / CLOCK_TICKS)
        if len(used) < 2 or max(used) == 0 or min(used) >= BALANCED_SHARE * max(used):
            return result
        if attempt < BALANCE_ATTEMPTS - 1:
            server.repeated_runs += 1
    return result


def _row(result: WrkResult) -> dict[str, Any]:
    return {
        "requests": result.requests,
        "seconds": result.seconds,
        "rate": result.rate,
        "p50_ms": result.p50_ms,
        "p90_ms": result.p90_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
        "mean_ms": result.mean_ms,
        "percentiles_ms": list(result.percentiles_ms),
        "worker_cpu_us_per_request": (
            result.worker_cpu_s / result.requests * 1e6 if result.worker_cpu_s is not None else None
        ),
    }


def _warm_up(server: Gunicorn, scripts: dict[str, Path], connections: int, seconds: float) -> None:
    """One untimed run per script (caches, connections, the workers' first requests); none if seconds is 0."""
    if seconds <= 0:
        return
    for side, script in scripts.items():
        checked(run_wrk(server.url, script, connections=connections, seconds=seconds), f"{side} warm-up", server)


def _total_rate(rows: Sequence[dict[str, Any]]) -> float:
    return sum(r["requests"] for r in rows) / sum(r["seconds"] for r in rows)


def _alternating(
    rounds: int, sides: Sequence[str], run: Callable[[str, int], dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Run every side once per round; the order reverses each round so drift hits both alike."""
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    for r in range(rounds):
        for side in sides if r % 2 == 0 else list(reversed(sides)):
            out[side].append(run(side, r))
    return out


def endpoint_bodies(requests_: Sequence[dict[str, Any]]) -> list[bytes]:
    """Request bodies as wrk sends them (the control endpoint's canned answers are keyed by these bytes)."""
    return [wire(r) for r in requests_]


def check_answers(server: Gunicorn, bodies: Sequence[bytes]) -> None:
    """Every body gets a 200 from both endpoints, with answers of the same size (the control's premise)."""
    session = requests.Session()
    headers = {"Content-Type": "application/json"}
    for body in bodies:
        sizes = []
        for path in (TRIAGE, CONTROL):
            response = session.post(server.url + path, data=body, headers=headers, timeout=10)
            if response.status_code != 200:
                raise MeasurementError(f"{path} answered {response.status_code} to a mix body: {response.text[:300]}")
            sizes.append(len(response.content))
        if sizes[0] != sizes[1]:
            raise MeasurementError(f"control answer is {sizes[1]} bytes, triage's {sizes[0]}: bench/app.py is stale")


def saturation(
    server: Gunicorn,
    folder: Path,
    bodies: Sequence[bytes],
    *,
    connections: int,
    seconds: float,
    rounds: int,
    warmup_seconds: float,
) -> dict[str, Any]:
    """Closed-loop load at fixed connections: /v1/triage against /bench/control, alternating rounds."""
    scripts = {
        "triage": write_script(folder, TRIAGE, list(bodies)),
        "control": write_script(folder, CONTROL, list(bodies)),
    }
    _warm_up(server, scripts, connections, warmup_seconds)

    def run(side: str, r: int) -> dict[str, Any]:
        result = run_balanced(server, scripts[side], connections=connections, seconds=seconds)
        return _row(checked(result, f"{side} saturation round {r + 1}", server))

    runs = _alternating(rounds, ("triage", "control"), run)
    ratios = [t["rate"] / c["rate"] for t, c in zip(runs["triage"], runs["control"], strict=True)]
    # The workers' CPU per request, control's over triage's: what the ratio would be if requests/s
    # followed the service's own CPU alone (rounds in which a worker was recycled are left out).
    cpu_ratios = [
        c["worker_cpu_us_per_request"] / t["worker_cpu_us_per_request"]
        for t, c in zip(runs["triage"], runs["control"], strict=True)
        if t["worker_cpu_us_per_request"] and c["worker_cpu_us_per_request"]
    ]
    return {
        "connections": connections,
        "seconds": seconds,
        "rounds": rounds,
        "runs": runs,
        "rate": {s: _total_rate(rows) for s, rows in runs.items()},
        "p50_ms": {s: statistics.median(r["p50_ms"] for r in rows) for s, rows in runs.items()},
        "p99_ms": {s: statistics.median(r["p99_ms"] for r in rows) for s, rows in runs.items()},
        "round_ratios": ratios,
        "ratio_median": statistics.median(ratios),
        "ratio_interval": median_interval(ratios),
        "ratio_total": _total_rate(runs["triage"]) / _total_rate(runs["control"]),
        "cpu_round_ratios": cpu_ratios,
        "cpu_ratio_median": statistics.median(cpu_ratios) if cpu_ratios else None,
        "cpu_ratio_interval": median_interval(cpu_ratios),
    }


def paced(
    server: Gunicorn,
    folder: Path,
    bodies: Sequence[bytes],
    *,
    target_rate: float,
    connections: int,
    seconds: float,
    rounds: int,
) -> dict[str, Any]:
    """Both endpoints offered one rate (wrk on a fixed send schedule, bench/wrk.py), p99 compared."""
    paths = {"triage": TRIAGE, "control": CONTROL}
    scripts = {s: write_script(folder, paths[s], list(bodies), rate=target_rate) for s in paths}

    def run(side: str, r: int) -> dict[str, Any]:
        result = run_balanced(server, scripts[side], connections=connections, seconds=seconds)
        return _row(checked(result, f"{side} paced round {r + 1}", server))

    runs = _alternating(rounds, ("triage", "control"), run)
    ratios = [t["p99_ms"] / c["p99_ms"] for t, c in zip(runs["triage"], runs["control"], strict=True)]
    return {
        "target_rate": target_rate,
        "connections": connections,
        "seconds": seconds,
        "rounds": rounds,
        "runs": runs,
        "rate": {s: _total_rate(rows) for s, rows in runs.items()},
        "p50_ms": {s: statistics.median(r["p50_ms"] for r in rows) for s, rows in runs.items()},
        "p99_ms": {s: statistics.median(r["p99_ms"] for r in rows) for s, rows in runs.items()},
        # quantile average over the rounds, per percentile: the curve for the figure
        "percentiles_ms": {
            s: [statistics.fmean(col) for col in zip(*(r["percentiles_ms"] for r in rows), strict=True)]
            for s, rows in runs.items()
        },
        "round_ratios": ratios,
        "ratio_median": statistics.median(ratios),
        "ratio_interval": median_interval(ratios),
        "ratio_of_medians": statistics.median(r["p99_ms"] for r in runs["triage"])
        / statistics.median(r["p99_ms"] for r in runs["control"]),
    }


# --- batch ------------------------------------------------------------------------------------------


def batch_available(server: Gunicorn) -> bool:
    """The build serves POST /v1/triage/batch (an empty probe: anything but 404/405 means it is routed)."""
    response = requests.post(server.url + BATCH, json={"cases": []}, timeout=10)
    return response.status_code not in (404, 405)


def check_batch(server: Gunicorn, cases: Sequence[dict[str, Any]]) -> int:
    """The batch answer follows the contract and agrees, case by case, with single calls. Its size in bytes."""
    session = requests.Session()
    response = session.post(
        server.url + BATCH, data=wire({"cases": list(cases)}), timeout=60, headers={"Content-Type": "application/json"}
    )
    if response.status_code != 200:
        raise MeasurementError(f"{BATCH} answered {response.status_code}: {response.text[:300]}")
    answer = response.json()
    results = answer.get("results")
    if not isinstance(results, list) or len(results) != len(cases):
        raise MeasurementError(f"{BATCH}: expected {len(cases)} results, got {answer!r:.300}")
    for i, (case, result) in enumerate(zip(cases, results, strict=True)):
        single = session.post(server.url + TRIAGE, json=case, timeout=10)
        if result.get("index") != i or result.get("status") != single.status_code:
            raise MeasurementError(
                f"{BATCH}: result {i} is {result!r:.300}, the single call answered {single.status_code}"
            )
        if single.status_code == 200 and result.get("answer") != single.json():
            raise MeasurementError(f"{BATCH}: the answer to case {i} differs from the single call's")
    if answer.get("answered") != sum(r["status"] == 200 for r in results) or answer.get("rejected") != sum(
        r["status"] != 200 for r in results
    ):
        raise MeasurementError(f"{BATCH}: answered/rejected counts do not match the results")
    return len(response.content)


def batch(
    server: Gunicorn,
    folder: Path,
    cases: Sequence[dict[str, Any]],
    *,
    connections: int,
    seconds: float,
    rounds: int,
    warmup_seconds: float,
) -> dict[str, Any]:
    """Cases per second: the cases as one batch body against the same cases as single calls."""
    if not batch_available(server):
        return {"available": False, "cases": len(cases)}
    answer_bytes = check_batch(server, cases)
    body = wire({"cases": list(cases)})
    scripts = {
        "batch": write_script(folder, BATCH, [body]),
        "single": write_script(folder, TRIAGE, endpoint_bodies(cases)),
    }
    _warm_up(server, scripts, connections, warmup_seconds)

    def run(side: str, r: int) -> dict[str, Any]:
        result = run_balanced(server, scripts[side], connections=connections, seconds=seconds)
        row = _row(checked(result, f"{side} round {r + 1}", server))
        row["cases_per_s"] = row["rate"] * (len(cases) if side == "batch" else 1)
        return row

    runs = _alternating(rounds, ("batch", "single"), run)
    ratios = [b["cases_per_s"] / s["cases_per_s"] for b, s in zip(runs["batch"], runs["single"], strict=True)]
    return {
        "available": True,
        "cases": len(cases),
        "body_bytes": len(body),
        "answer_bytes": answer_bytes,
        "connections": connections,
        "seconds": seconds,
        "rounds": rounds,
        "runs": runs,
        "cases_per_s": {
            "batch": _total_rate(runs["batch"]) * len(cases),
            "single": _total_rate(runs["single"]),
        },
        "p50_ms": {s: statistics.median(r["p50_ms"] for r in rows) for s, rows in runs.items()},
        "p99_ms": {s: statistics.median(r["p99_ms"] for r in rows) for s, rows in runs.items()},
        "round_ratios": ratios,
        "ratio_median": statistics.median(ratios),
        "ratio_interval": median_interval(ratios),
        "ratio_total": _total_rate(runs["batch"]) * len(cases) / _total_rate(runs["single"]),
    }


# --- cold start -------------------------------------------------------------------------------------


def cold_start(workdir: Path, repeat: int) -> dict[str, Any]:
    """The production app (service:create_app()) from starting gunicorn to the first 200 from /readyz."""
    times = []
    for n in range(repeat):
        with Gunicorn(SERVICE_APP, workdir, name=f"cold-{n + 1}") as server:
            times.append(server.cold_start_s)
    return {"times_s": times, "median_s": statistics.median(times), "repeat": repeat}


def dump(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)
