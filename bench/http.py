"""The HTTP sections: gunicorn as deployed (tests/live.py starts it) under load, beside a yardstick.

wrk's runs (`Load`): /v1/triage against /bench/control (bench/app.py) and bare Flask (bench/bare.py, its own
server) at saturation, /v1/triage against /bench/control at one offered rate, and the batch endpoint against
single calls; any failed request (non-2xx or socket error) is a MeasurementError. Sequential calls: CDS
Hooks against /v1/triage. And the cold start.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from bench import bare
from bench.app import CONTROL, canned_answers, wire
from bench.stats import median_interval
from bench.workload import typical_request
from bench.wrk import run_wrk, write_script
from service.auth.policy import key_hash
from tests.live import SERVICE_APP, Replica, free_port, running

BENCH_APP = "bench.app:create_bench_app()"
BARE_APP = "bench.bare:create_bare_app()"
TRIAGE = "/v1/triage"
BATCH = "/v1/triage/batch"
CDS = "/cds-services/leg-raise-triage"
CDS_ISSUER = "https://ehr.bench.invalid/"
CDS_KID = "bench-key"
SPEC_TARGET_MS = 500.0  # CDS Hooks 2.0.1: services should answer on the order of 500 ms
# Access control stays on, as deployed: /v1 needs an API key (the bench's own, in a keys file per server).
API_KEY = "bench-" + "5e" * 16
HEADERS = {"Content-Type": "application/json", "X-API-Key": API_KEY}  # every side is sent the same
START_TIMEOUT = 60.0
READY_POLL_S = 0.01  # the cold start is timed to the first 200 from /readyz: poll often
BALANCE_ATTEMPTS = 4
BALANCED_SHARE = 0.5  # the least busy worker used at least half the CPU of the busiest
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # /proc/<pid>/stat counts CPU time in these
# Empty, gunicorn.conf.py makes its own metrics and CDS replay directories on /dev/shm, as deployed; the
# harness's default puts them on disk, where the replay store's SQLite writes would slow CDS Hooks calls.
SERVER_ENV = {"PROMETHEUS_MULTIPROC_DIR": ""}


Ratio = Callable[[dict[str, Any], dict[str, Any]], float]
Side = tuple[Replica, Path]  # the server wrk loads and its script
Rounds = tuple[float, int, float]  # seconds per run, rounds, warm-up seconds per side (0: none)


class MeasurementError(RuntimeError):
    """A figure could not be taken (failed requests, wrong answers)."""


def serving(
    directory: Path, name: str, app: str = SERVICE_APP, env: dict[str, str] | None = None, port: int | None = None
) -> contextlib.AbstractContextManager[Replica]:
    """gunicorn with the production config, ready on entry (`ready_s`: its cold start), stopped on exit.
    A server that does not start raises pytest's Failed, which the sections report like any error."""
    directory.mkdir(parents=True, exist_ok=True)
    keys = directory / "api-keys.yaml"
    entry = {"id": "bench", "sha256": key_hash(API_KEY), "scopes": ["triage"], "revoked": False}
    keys.write_text(json.dumps({"keys": [entry]}))  # JSON is YAML
    access = {"TRIAGE_API_OPEN": "false", "TRIAGE_API_KEYS_FILE": str(keys)}
    overrides = {**SERVER_ENV, **access, **(env or {})}
    return running(
        directory, overrides, name, port=port, app=app, ready_timeout=START_TIMEOUT, ready_interval=READY_POLL_S
    )


def serving_bare(directory: Path) -> contextlib.AbstractContextManager[Replica]:
    """bench/bare.py by `serving`, the same command and config, with the bench app's canned answers."""
    directory.mkdir(parents=True, exist_ok=True)
    answers = canned_answers()
    path = bare.write_answers(directory / "canned-answers.json", answers, answers[wire(typical_request())])
    return serving(directory, "bare-app", BARE_APP, env={bare.ANSWERS_ENV: str(path)})


def keyed_session() -> requests.Session:
    session = requests.Session()
    session.headers.update(HEADERS)
    return session


def gunicorn_settings() -> dict[str, str]:
    """The serving settings in effect (the environment gunicorn.conf.py reads, or its defaults)."""
    return {
        "workers": os.environ.get("WEB_CONCURRENCY", "2"),
        "threads": os.environ.get("GUNICORN_THREADS", "4"),
        "max_requests": os.environ.get("GUNICORN_MAX_REQUESTS", "50000"),
        "log_level": os.environ.get("LOG_LEVEL", "info"),
        "extra_args": os.environ.get("GUNICORN_CMD_ARGS", ""),
    }


def worker_boots(server: Replica) -> int:
    """Workers booted so far, the first ones included (more than `workers`: some were recycled)."""
    return server.log_text().count("Booting worker")


def worker_cpu_ticks(server: Replica) -> dict[int, int]:
    """CPU time (clock ticks, user + system) used so far by each current worker."""
    ticks = {}
    for pid in server.worker_pids():
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


@dataclass
class Load:
    """wrk at a fixed connection count, its scripts in `folder`; counts the runs taken again (`run`)."""

    folder: Path
    connections: int
    repeated_runs: int = 0

    def checked(self, row: dict[str, Any], label: str, server: Replica) -> dict[str, Any]:
        """The run, or MeasurementError if any request failed."""
        if row["failures"] or not row["requests"]:
            kinds = ", ".join(f"{k} {v}" for k, v in row["failure_kinds"].items() if v) or "no requests"
            recycled = worker_boots(server) - int(gunicorn_settings()["workers"])
            hint = f"; {recycled} worker(s) recycled so far (max_requests)" if recycled > 0 else ""
            raise MeasurementError(
                f"wrk {label}: {row['failures']} of {row['requests']} requests failed ({kinds}){hint}"
            )
        return row

    def run(self, side: Side, seconds: float, label: str) -> dict[str, Any]:
        """A checked wrk run in which every worker took part; at most BALANCE_ATTEMPTS tries.

        wrk opens all its connections in one burst, and on gunicorn's one shared listening socket the
        first worker to wake can accept every one of them: the run would measure where the kernel put
        the connections, not the service. The scripts renew connections as a proxy does (bench/wrk.py,
        RECYCLE_EVERY), which spreads them again within a run; a run still one-sided is repeated.
        """
        server, script = side
        for attempt in range(BALANCE_ATTEMPTS):
            before = worker_cpu_ticks(server)
            row = run_wrk(server.url, script, connections=self.connections, seconds=seconds)
            after = worker_cpu_ticks(server)
            used = [after[pid] - before[pid] for pid in after if pid in before]
            if len(used) < 2 or max(used) == 0 or min(used) >= BALANCED_SHARE * max(used):
                break
            if attempt < BALANCE_ATTEMPTS - 1:
                self.repeated_runs += 1
        self.checked(row, label, server)
        recycled = not before or after.keys() != before.keys()  # a new worker's CPU would be missing
        cpu_s = None if recycled else sum(used) / CLOCK_TICKS
        return {**row, "worker_cpu_us_per_request": None if cpu_s is None else cpu_s / row["requests"] * 1e6}

    def compare(self, label: str, sides: dict[str, Side], ratio: Ratio, budget: Rounds) -> dict[str, Any]:
        """Every side once per round, the order rotated every round so drift hits all alike (two sides:
        reversed), after an untimed run of each (caches, connections, the workers' first requests) unless
        warm-up is 0 s. Totals, medians over rounds and `ratio(first side's run, second's)` per round."""
        seconds, rounds, warmup_seconds = budget
        if warmup_seconds > 0:
            for name, (server, script) in sides.items():
                row = run_wrk(server.url, script, connections=self.connections, seconds=warmup_seconds)
                self.checked(row, f"{name} warm-up", server)
        names = list(sides)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for r in range(rounds):
            turn = r % len(names)
            for name in names[turn:] + names[:turn]:
                runs[name].append(self.run(sides[name], seconds, f"{name} {label} round {r + 1}"))
        return {
            "connections": self.connections,
            "seconds": seconds,
            "rounds": rounds,
            "runs": runs,
            "rate": {s: _total_rate(rows) for s, rows in runs.items()},
            "p50_ms": {s: statistics.median(r["p50_ms"] for r in rows) for s, rows in runs.items()},
            "p99_ms": {s: statistics.median(r["p99_ms"] for r in rows) for s, rows in runs.items()},
            **of_rounds([ratio(a, b) for a, b in zip(runs[names[0]], runs[names[1]], strict=True)]),
        }


def of_rounds(ratios: list[float], prefix: str = "") -> dict[str, Any]:
    """A ratio per round, their median (None: no round) and the interval of that median."""
    median = statistics.median(ratios) if ratios else None
    return {
        f"{prefix}round_ratios": ratios,
        f"{prefix}ratio_median": median,
        f"{prefix}ratio_interval": median_interval(ratios),
    }


def _total_rate(rows: Sequence[dict[str, Any]]) -> float:
    return sum(r["requests"] for r in rows) / sum(r["seconds"] for r in rows)


def check_answers(server: Replica, bare_server: Replica, bodies: Sequence[bytes]) -> None:
    """Every body gets a 200 from every endpoint, each answer the size of /v1/triage's (the yardsticks' premise)."""
    session = keyed_session()
    for body in bodies:
        sizes = {}
        for where, path in ((server, TRIAGE), (server, CONTROL), (bare_server, bare.BARE)):
            response = session.post(where.url + path, data=body, timeout=10)
            if response.status_code != 200:
                raise MeasurementError(f"{path} answered {response.status_code} to a mix body: {response.text[:300]}")
            sizes[path] = len(response.content)
        if stale := [f"{path} {n}" for path, n in sizes.items() if n != sizes[TRIAGE]]:
            raise MeasurementError(
                f"answers of {', '.join(stale)} bytes, triage's {sizes[TRIAGE]}: canned answers stale"
            )


def _endpoint_sides(
    load: Load, server: Replica, bodies: list[bytes], rate: float = 0.0, bare_server: Replica | None = None
) -> dict[str, Side]:
    """/v1/triage and /bench/control on the bench server, then /bench/bare on its own when given."""
    paths = {"triage": (server, TRIAGE), "control": (server, CONTROL)}
    paths |= {"bare": (bare_server, bare.BARE)} if bare_server else {}
    return {side: (at, write_script(load.folder, path, bodies, HEADERS, rate)) for side, (at, path) in paths.items()}


def saturation(
    load: Load, server: Replica, bare_server: Replica, bodies: list[bytes], budget: Rounds
) -> dict[str, Any]:
    """Closed-loop load at fixed connections: /v1/triage against /bench/control and bare Flask."""
    sides = _endpoint_sides(load, server, bodies, bare_server=bare_server)
    out = load.compare("saturation", sides, lambda t, c: t["rate"] / c["rate"], budget)
    runs, rate = out["runs"], out["rate"]
    cpu = {side: [r["worker_cpu_us_per_request"] for r in rows] for side, rows in runs.items()}
    # The workers' CPU per request, control's over triage's: what the ratio would be if requests/s
    # followed the service's own CPU alone (rounds in which a worker was recycled are left out).
    cpu_ratios = [c / t for t, c in zip(cpu["triage"], cpu["control"], strict=True) if t and c]
    return {
        **out,
        "ratio_total": rate["triage"] / rate["control"],
        **of_rounds(cpu_ratios, "cpu_"),
        "cpu_us_per_request": {
            side: statistics.median(v) if (v := [x for x in xs if x]) else None for side, xs in cpu.items()
        },
        # Each endpoint's requests/s over bare Flask's, round by round.
        "bare": {
            side: {
                **of_rounds([x["rate"] / b["rate"] for x, b in zip(runs[side], runs["bare"], strict=True)]),
                "ratio_total": rate[side] / rate["bare"],
            }
            for side in ("triage", "control")
        },
    }


def paced(load: Load, server: Replica, bodies: list[bytes], target_rate: float, budget: Rounds) -> dict[str, Any]:
    """Both endpoints offered one rate (wrk on a fixed send schedule, bench/wrk.py), p99 compared."""
    sides = _endpoint_sides(load, server, bodies, target_rate)
    out = load.compare("paced", sides, lambda t, c: t["p99_ms"] / c["p99_ms"], budget)
    # Quantile average over the rounds, per percentile: the curve for the figure.
    curves = {
        side: [statistics.fmean(col) for col in zip(*(r["percentiles_ms"] for r in rows), strict=True)]
        for side, rows in out["runs"].items()
    }
    medians = out["p99_ms"]["triage"] / out["p99_ms"]["control"]
    return {**out, "target_rate": target_rate, "percentiles_ms": curves, "ratio_of_medians": medians}


def check_batch(server: Replica, cases: Sequence[dict[str, Any]]) -> int:
    """The batch answer follows the contract and agrees, case by case, with single calls. Its size in bytes."""
    session = keyed_session()
    response = session.post(server.url + BATCH, data=wire({"cases": list(cases)}), timeout=60)
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
    answered = sum(r["status"] == 200 for r in results)
    if (answer.get("answered"), answer.get("rejected")) != (answered, len(results) - answered):
        raise MeasurementError(f"{BATCH}: answered/rejected counts do not match the results")
    return len(response.content)


def batch(load: Load, server: Replica, cases: Sequence[dict[str, Any]], budget: Rounds) -> dict[str, Any]:
    """Cases per second: the cases as one batch body against the same cases as single calls."""
    n = len(cases)
    answer_bytes = check_batch(server, cases)
    body = wire({"cases": list(cases)})
    sides = {
        "batch": (server, write_script(load.folder, BATCH, [body], HEADERS)),
        "single": (server, write_script(load.folder, TRIAGE, [wire(c) for c in cases], HEADERS)),
    }
    out = load.compare("batch", sides, lambda b, s: b["rate"] * n / s["rate"], budget)
    cases_per_s = {"batch": out["rate"]["batch"] * n, "single": out["rate"]["single"]}
    return {
        **out,
        "cases": n,
        "body_bytes": len(body),
        "answer_bytes": answer_bytes,
        "cases_per_s": cases_per_s,
        "ratio_total": cases_per_s["batch"] / cases_per_s["single"],
    }


def cold_start(workdir: Path, repeat: int) -> dict[str, Any]:
    """The production app (service:create_app()) from starting gunicorn to the first 200 from /readyz."""
    times = []
    for n in range(repeat):
        with serving(workdir, f"cold-{n + 1}") as server:
            times.append(server.ready_s)
    return {"times_s": times, "median_s": statistics.median(times), "repeat": repeat}


# --- CDS Hooks ---------------------------------------------------------------------------------------


def _typical_call() -> tuple[dict[str, Any], dict[str, Any]]:
    """(findings, a `patient-view` call with them as Observations in the prefetch, and an active Condition)."""
    from tests.fhir_cases import call_for
    from tests.scenarios import exam

    findings = exam({"slr.result": "weak", "slr.side": "left", "pain.locations": ["low_back", "anterior_thigh"]})
    status = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}
    condition = {"resourceType": "Condition", "id": "c-1", "clinicalStatus": status}
    condition |= {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "279039007"}]}}
    return findings, call_for(findings, [{**condition, "subject": {"reference": "Patient/pat-1"}}])


def _tokens(workdir: Path, audience: str, count: int) -> list[str]:
    """Tokens from a new ES384 key, which workdir/trust.yaml makes the server trust. Signed before any
    timing: signing is the EHR's cost, not the service's."""
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = {**json.loads(ECAlgorithm.to_jwk(key.public_key())), "kid": CDS_KID, "alg": "ES384", "use": "sig"}
    (workdir / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    (workdir / "trust.yaml").write_text(f"issuers:\n  - iss: {CDS_ISSUER}\n    jwks_file: jwks.json\n")
    now = int(time.time())
    claims = {"iss": CDS_ISSUER, "aud": audience, "iat": now, "exp": now + 300}
    headers = {"kid": CDS_KID, "typ": "JWT"}
    return [jwt.encode({**claims, "jti": str(uuid.uuid4())}, key, "ES384", headers) for _ in range(count)]


def _timed_calls(send: Callable[[], requests.Response], count: int) -> list[float]:
    """Milliseconds per call, client side; MeasurementError unless every call answered 200."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = send()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise MeasurementError(f"benchmark call answered {response.status_code}: {response.text[:300]}")
        times.append(elapsed)
    return times


def _latency(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    at = {p: ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] for p in (90, 99)}
    return {"p50": statistics.median(ordered), "p90": at[90], "p99": at[99], "max": ordered[-1]}


def cds_hooks(workdir: Path, requests_per_round: int, rounds: int) -> dict[str, Any]:
    """A typical CDS Hooks call with JWT verification on, against POST /v1/triage on the same findings:
    sequential calls over one keep-alive connection (the service's own latency, not queueing), in
    alternating rounds so drift on the shared machine hits both alike. Percentiles in ms."""
    findings, call = _typical_call()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()  # the server's own URL is a setting (token audience)
    url = f"http://127.0.0.1:{port}"
    tokens = iter(_tokens(workdir, url + CDS, rounds * requests_per_round + 10))
    env = {"TRIAGE_CDS_TRUST_FILE": str(workdir / "trust.yaml"), "TRIAGE_PUBLIC_BASE_URL": url}
    with serving(workdir, "cds", env=env, port=port):
        session = keyed_session()

        def cds() -> requests.Response:
            headers = {"Authorization": f"Bearer {next(tokens)}"}
            return session.post(url + CDS, json=call, headers=headers, timeout=10)

        def triage() -> requests.Response:
            return session.post(url + TRIAGE, json={"findings": findings}, timeout=10)

        _timed_calls(cds, 10)  # warm up both workers' caches and the connection
        _timed_calls(triage, 10)
        times: dict[str, list[float]] = {"cds": [], "triage": []}
        for _ in range(rounds):
            times["cds"] += _timed_calls(cds, requests_per_round)
            times["triage"] += _timed_calls(triage, requests_per_round)
    return {
        **{side: _latency(t) for side, t in times.items()},
        "requests": len(times["cds"]),
        "rounds": rounds,
        "prefetch_bytes": len(json.dumps(call).encode()),
        "observations": len(call["prefetch"]["observations"]["entry"]),
    }
