"""`python -m bench [--budget full|tiny] [--out docs/performance.md]` (make bench): every section in one run.

Writes the markdown report to --out, the figure beside it (.png), and prints the report. Exit status 0
when every figure was taken, met or not (the report says); 1 when a measurement failed (failed requests,
zen disagreeing with our engine, a server that did not start): the report still shows the rest. `tiny`
is for the test: every code path in about half a minute, figures of no value.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import timeit
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench import http, report
from service.knowledge import load_knowledge

ROOT = Path(__file__).resolve().parents[1]
# A server that does not start fails through tests/live.py with pytest's Failed, a BaseException.
FAILURES = (Exception, pytest.fail.Exception)


@dataclass(frozen=True)
class Budget:
    name: str = "full"
    # Many short alternating rounds: the machine's speed drifts within seconds, and a median of more paired
    # rounds moves less with it; rounds of 1 s spread half as much again as rounds of 2 s. The throughput
    # comparison runs three sides (triage, control, bare Flask) per round, their order rotated: 27 rounds
    # are 9 whole rotations (each side in each place as often), give a 95% interval of the median from the
    # 9th to the 19th round (bench/stats.py; 13 rounds: the 4th to the 10th), and take 27 x 3 x 2 s, about
    # 3 minutes with wrk's start-up and runs taken again: under 4.
    saturation_seconds: float = 2
    saturation_rounds: int = 27
    seconds: float = 2  # each timed wrk run of the batch comparison
    rounds: int = 13  # alternating rounds of the half-rate and batch comparisons
    paced_seconds: float = 8  # a round's p99 is its 1% slowest: at 4 s, one or two stalls set it
    warmup_seconds: float = 2  # per endpoint before a comparison (0: none)
    connections: int = 16
    repeat: int = 5  # engine scaling passes
    evaluations_repeat: int = 20  # passes over the bundled knowledge
    zen_repeat: int = 20
    factors: tuple[int, ...] = (1, 10, 100)
    requests: int | None = None  # engine and zen: this many complete + as many partial exams (None: all)
    batch_cases: int = 100
    cds_requests: int = 300
    cds_rounds: int = 3
    cold_starts: int = 3


TINY = {"saturation_seconds": 1, "saturation_rounds": 1, "seconds": 1, "rounds": 1, "paced_seconds": 1}
TINY |= {"warmup_seconds": 0, "repeat": 1, "evaluations_repeat": 1, "zen_repeat": 1, "factors": (1, 2)}
TINY |= {"requests": 4, "cds_requests": 3, "cds_rounds": 1, "cold_starts": 1}
BUDGETS = {"full": Budget(), "tiny": Budget(name="tiny", **TINY)}


def machine_speed_ms() -> float:
    """The machine's speed now: ms for a fixed pure-Python loop, the best of five. On this shared
    machine it drifts by 2x within minutes; the report shows it beside the absolute figures."""
    return min(timeit.repeat("sum(range(1_000_000))", number=1, repeat=5)) * 1000


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def guarded(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The section's figures, or its error (logged with its traceback)."""
    try:
        return run()
    except FAILURES as exc:
        say(f"measurement failed: {exc}")
        traceback.print_exception(exc, file=sys.stderr)
        return {"error": f"{type(exc).__name__}: {exc}"}


def engine_requests(budget: Budget) -> list[dict[str, Any]]:
    """The scenario mix, or `requests` complete and as many partial exams from it (halves kept in order)."""
    from bench.workload import scenario_mix

    mix = scenario_mix()
    half = len(mix) // 2
    return mix if budget.requests is None else mix[: budget.requests] + mix[half : half + budget.requests]


def section_http(budget: Budget, workdir: Path) -> dict[str, dict[str, Any]]:
    """Sections 1 and 4 on one bench server (and bare Flask beside it, for saturation): saturation,
    /v1/triage and the control paced at half the control's rate, then batch against single calls."""
    from bench.app import wire
    from bench.workload import scenario_mix

    mix = scenario_mix()
    bodies = [wire(r) for r in mix]  # as wrk sends them: the control's canned answers are keyed by these bytes
    (workdir / "wrk").mkdir(parents=True, exist_ok=True)
    with (
        http.serving(workdir, "bench-app", http.BENCH_APP) as server,
        http.serving_bare(workdir / "bare") as bare,
    ):
        say(f"bench app up on {server.url} in {server.ready_s:.2f} s, bare Flask on {bare.url}")
        http.check_answers(server, bare, bodies)
        load = http.Load(workdir / "wrk", budget.connections)

        def throughput_and_latency() -> dict[str, Any]:
            say("HTTP saturation: /v1/triage against /bench/control and bare Flask")
            rounds = (budget.saturation_seconds, budget.saturation_rounds, budget.warmup_seconds)
            sat = http.saturation(load, server, bare, bodies, rounds)
            half = sat["rate"]["control"] / 2
            say(f"HTTP at half the control's rate ({half:.0f} req/s)")
            pace = http.paced(load, server, bodies, half, (budget.paced_seconds, budget.rounds, 0))
            return {
                "saturation": sat,
                "paced": pace,
                "bodies": len(bodies),
                "bare_worker_boots": http.worker_boots(bare),
            }

        def batch() -> dict[str, Any]:
            say(f"batch of {budget.batch_cases} against single calls")
            cases = [mix[i % len(mix)] for i in range(budget.batch_cases)]
            return http.batch(load, server, cases, (budget.seconds, budget.rounds, budget.warmup_seconds))

        out = {"http": guarded(throughput_and_latency), "batch": guarded(batch)}
        shared = {"worker_boots": http.worker_boots(server), "repeated_runs": load.repeated_runs}
    return {name: {**data, **shared} for name, data in out.items()}


def section_engine(budget: Budget) -> dict[str, Any]:
    from bench.engine import scaling, time_evaluations

    requests = engine_requests(budget)
    say(f"engine scaling over factors {budget.factors}")
    rows = scaling(requests, factors=budget.factors, repeat=budget.repeat)
    say("engine time per evaluation (bundled knowledge)")
    bundled = time_evaluations(load_knowledge(), requests, budget.evaluations_repeat)
    return {
        "requests": len(requests),
        "repeat": budget.repeat,
        "evaluations_repeat": budget.evaluations_repeat,
        "scaling": rows,
        "samples_us": bundled.pop("samples_us"),
        "bundled": bundled,
    }


def section_zen(budget: Budget) -> dict[str, Any]:
    from bench.zen import compare

    say("zen-engine peer")
    z = compare(load_knowledge(), engine_requests(budget), budget.zen_repeat)
    if z["agree"] != z["requests"]:
        raise http.MeasurementError(f"zen-engine and our engine agree on the level for {z['agree']} of {z['requests']}")
    return {**z, "repeat": budget.zen_repeat}


def measure(budget: Budget) -> dict[str, Any]:
    """Every section's figures (or its error), with the conditions they were taken in."""
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    speed = {"start": machine_speed_ms()}
    sections: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="legraise-bench-") as tmp:
        workdir = Path(tmp)
        # The server did not start, or the mix does not answer 200: both sections fail.
        both = guarded(lambda: section_http(budget, workdir / "http"))
        sections |= {"http": both, "batch": both} if "error" in both else both
        speed["engine"] = machine_speed_ms()
        sections["engine"] = guarded(lambda: section_engine(budget))
        sections["zen"] = guarded(lambda: section_zen(budget))
        say("CDS Hooks against /v1/triage")
        sections["cds"] = guarded(lambda: http.cds_hooks(workdir / "cds", budget.cds_requests, budget.cds_rounds))
        say(f"cold start x{budget.cold_starts}")
        sections["cold"] = guarded(lambda: http.cold_start(workdir / "cold", budget.cold_starts))
    return {
        "budget": asdict(budget),
        "started": started,
        "seconds": (datetime.now(UTC) - started).total_seconds(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "machine_speed_ms": {**speed, "end": machine_speed_ms()},
        "gunicorn": http.gunicorn_settings(),
        "sections": sections,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="full")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    args = parser.parse_args(argv)
    results = measure(BUDGETS[args.budget])
    png = args.out.with_suffix(".png")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report.figure(results, png)
    text = report.render(results, png.name)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    failed = [name for name, data in results["sections"].items() if "error" in data]
    if failed:
        say(f"measurement failed in: {', '.join(failed)} (see the report)")
        return 1
    say(f"report written to {args.out} and {png} in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
