"""The benchmark report: markdown (docs/performance.md) and its figure (docs/performance.png).

Every table has a "target / met?" column; a section whose measurement failed shows the error in its
place. The "Profile and what changed" section is the static file bench/profile_notes.md when it
exists, after the `<!-- profile notes -->` marker, else a placeholder paragraph.
"""

from __future__ import annotations

import math
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import http, wrk
from bench.stats import Interval, settles

ROOT = Path(__file__).resolve().parents[1]
PROFILE_NOTES = ROOT / "bench" / "profile_notes.md"
PROFILE_MARKER = "<!-- profile notes -->"
PACKAGES = ("flask", "werkzeug", "gunicorn", "marshmallow", "orjson", "zen-engine")

# Targets (issue 5): what "met" means for each figure.
THROUGHPUT_RATIO_MIN = 0.85  # /v1/triage req/s over the control's
P99_RATIO_MAX = 1.5  # /v1/triage p99 over the control's at half the control's saturating rate
ENGINE_P50_MAX_US = 25.0  # bundled knowledge
ENGINE_GROWTH_MAX = 10.0  # p50 at 100x the rules over p50 at 1x
ENGINE_GROWTH_FACTOR = 100
ZEN_RATIO_MAX = 1.0  # ours over zen's, p50 per decision
BATCH_RATIO_MIN = 5.0  # cases/s in one batch over single calls
COLD_START_MAX_S = 2.0  # median


# --- context ------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPU": cpu_model(),
        "cores": f"{os.cpu_count()} ({usable} usable by this process)",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    from bench.wrk import wrk_version

    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        out["wrk"] = wrk_version()
    except (OSError, RuntimeError, IndexError) as exc:
        out["wrk"] = f"unavailable ({exc})"
    return out


# --- helpers ------------------------------------------------------------------------------------------


def check(value: float | None, op: str, bound: float, fmt: str = "{:g}") -> str:
    """The "target / met?" cell: `≥ 0.85 / yes` or `≥ 0.85 / **NO**`."""
    target = f"{op} {fmt.format(bound)}"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{target} / not measured"
    ok = {"≥": value >= bound, "≤": value <= bound, "<": value < bound}[op]
    return f"{target} / {'yes' if ok else '**NO**'}"


def interval_row(data: dict[str, Any], op: str, bound: float, at: int = 1) -> list[str]:
    """The row under a median-of-rounds ratio in a five-column table: the distribution-free interval
    of that median, in column `at`, and whether it settles the target (lies wholly on one side of
    it) or leaves it to the machine's noise."""
    interval = _interval(data)
    coverage, within = _interval_cells(interval)
    cells = [f"{coverage} interval of that median (order statistics of the rounds)", "", "", ""]
    cells[at] = within
    return [*cells, settled_cell(interval, op, bound)]


def _interval_cells(interval: Interval | None) -> tuple[str, str]:
    """(its coverage, its bounds) as the tables show them."""
    if interval is None:
        return "90%", "too few rounds"
    return f"{interval.coverage:.0%}", f"{interval.low:.2f} to {interval.high:.2f}"


def _cpu_rows(sat: dict[str, Any]) -> list[list[str]]:
    """The workers' CPU per request, control ÷ triage: a median of rounds and its interval, no target."""
    median = sat.get("cpu_ratio_median")
    coverage, within = _interval_cells(_interval(sat, "cpu_ratio_interval"))
    return [
        [
            "workers' CPU per request, control ÷ triage, median of rounds",
            "not measured" if median is None else f"{median:.2f}",
            "",
            "",
            "- (not a target)",
        ],
        [f"{coverage} interval of that median", within, "", "", "-"],
    ]


def settled_cell(interval: Interval | None, op: str, bound: float) -> str:
    if settles(interval, op, bound):
        return f"settles {op} {bound:g}"
    return f"straddles {bound:g}: **not settled** by this run"


def _interval(data: dict[str, Any] | None, key: str = "ratio_interval") -> Interval | None:
    # Stored as a list once the results have been through JSON.
    found = (data or {}).get(key)
    return Interval(*found) if found else None


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _failed(data: dict[str, Any]) -> str | None:
    if "error" in data:
        return (
            f"**Measurement failed**: `{data['error']}`\n\n"
            "| figure | target / met? |\n|---|---|\n| every figure of this section | not measured |"
        )
    return None


def _rounds(values: list[float], fmt: str = "{:.2f}") -> str:
    return ", ".join(fmt.format(v) for v in values)


# --- the figures and their checks (also used by the summary) --------------------------------------------


def targets(sections: dict[str, dict[str, Any]]) -> list[tuple[str, str, float | None, str, float, str]]:
    """(section, figure, value, op, bound, value format) for every target."""
    out: list[tuple[str, str, float | None, str, float, str]] = []
    h = sections.get("http", {})
    sat, pace = h.get("saturation"), h.get("paced")
    out.append(
        (
            "1. HTTP",
            "throughput /v1/triage ÷ control (median of rounds)",
            sat["ratio_median"] if sat else None,
            "≥",
            THROUGHPUT_RATIO_MIN,
            "{:.2f}",
        )
    )
    out.append(
        (
            "1. HTTP",
            "p99 /v1/triage ÷ control at half rate (median of rounds)",
            pace["ratio_median"] if pace else None,
            "≤",
            P99_RATIO_MAX,
            "{:.2f}",
        )
    )
    e = sections.get("engine", {})
    rows = e.get("scaling") or []
    base = rows[0] if rows else None
    grown = next((r for r in rows if r["factor"] == ENGINE_GROWTH_FACTOR), None)
    out.append(
        (
            "2. Engine",
            "p50 µs per evaluation, 1x knowledge",
            base["p50_us"] if base else None,
            "≤",
            ENGINE_P50_MAX_US,
            "{:.1f}",
        )
    )
    out.append(
        (
            "2. Engine",
            f"p50 at {ENGINE_GROWTH_FACTOR}x rules ÷ p50 at 1x",
            grown["ratio_p50"] if grown else None,
            "≤",
            ENGINE_GROWTH_MAX,
            "{:.2f}",
        )
    )
    z = sections.get("zen", {})
    out.append(
        (
            "3. zen-engine",
            "ours ÷ zen, p50 per decision",
            z.get("ratio_ours_full_answer_over_zen_level_only_p50"),
            "≤",
            ZEN_RATIO_MAX,
            "{:.2f}",
        )
    )
    b = sections.get("batch", {})
    out.append(
        (
            "4. Batch",
            "cases/s batch ÷ single calls (median of rounds)",
            b.get("ratio_median"),
            "≥",
            BATCH_RATIO_MIN,
            "{:.2f}",
        )
    )
    c = sections.get("cds", {})
    spec = c.get("spec_target_ms", 500.0)
    out.append(
        ("5. CDS Hooks", "p99 ms of a card response", c["cds"]["p99"] if "cds" in c else None, "≤", spec, "{:.1f}")
    )
    cold = sections.get("cold", {})
    out.append(
        ("6. Cold start", "median s to first 200 from /readyz", cold.get("median_s"), "<", COLD_START_MAX_S, "{:.2f}")
    )
    return out


# --- markdown -----------------------------------------------------------------------------------------


def render(results: dict[str, Any], png_name: str) -> str:
    s = results["sections"]
    budget = results["budget"]
    parts = [
        _header(results),
        _summary(s),
        _http(s.get("http", {}), results),
        _engine(s.get("engine", {})),
        _zen(s.get("zen", {})),
        _batch(s.get("batch", {}), results),
        _cds(s.get("cds", {})),
        _cold(s.get("cold", {})),
        f"## Figure\n\n![engine scaling and latency distributions]({png_name})\n\n"
        "Left: the engine's p50 and p99 per evaluation against the number of rules (log-log), with the "
        f"targets ({ENGINE_P50_MAX_US:g} µs at 1x; {ENGINE_GROWTH_MAX:g}x the 1x p50 at {ENGINE_GROWTH_FACTOR}x). "
        "Right: latency distributions as cumulative curves on a log axis: /v1/triage and the control endpoint "
        "at the same offered rate (half the control's saturating rate; wrk's percentiles 1..99 and 99.9, "
        "averaged per percentile over the rounds), and the engine's own time per evaluation in process "
        "(every evaluation timed).",
        _profile(),
    ]
    if budget["name"] != "full":
        parts.insert(
            1, f"> **Budget `{budget['name']}`**: a smoke run of the benchmark code; the figures mean nothing."
        )
    return "\n\n".join(p.strip() for p in parts) + "\n"


def _header(results: dict[str, Any]) -> str:
    m = machine()
    v = versions()
    g = results["gunicorn"]
    load = " / ".join(f"{x:.2f}" for x in results["load_before"])
    load_after = " / ".join(f"{x:.2f}" for x in results["load_after"])
    return f"""# Performance

Generated by `make bench` (`python -m bench --budget {results["budget"]["name"]}`) on
{results["started"]:%Y-%m-%d %H:%M} UTC in {results["seconds"]:.0f} s. Every figure is taken in this one run,
side by side with its yardstick, and given as a ratio as well as in absolute numbers: the machine is
shared and noisy, absolute numbers drift between runs, ratios hold. Exit status 0 means every figure was
taken; a missed target is marked **NO** below.

| machine | |
|---|---|
{chr(10).join(f"| {k} | {val} |" for k, val in m.items())}
| load average (1/5/15 min) | {load} at the start, {load_after} at the end |
| machine speed: ms for `sum(range(10**6))`, best of 5 | {_speed(results)} |

| software | version |
|---|---|
{chr(10).join(f"| {k} | {val} |" for k, val in v.items())}

Serving: `python -m gunicorn -c deploy/gunicorn.conf.py` (the production config), gthread,
{g["workers"]} workers x {g["threads"]} threads, max_requests {g["max_requests"]} (+ jitter), log level
{g["log_level"]} (one JSON request line per call and one audit line per decision, written to a log file),
app preloaded in the master; GUNICORN_CMD_ARGS=`{g["extra_args"] or "(none)"}`."""


def _ratio_intervals(s: dict[str, dict[str, Any]]) -> list[tuple[str, Interval | None, str, float]]:
    """(figure, interval, op, bound) for the targets judged on a median of rounds."""
    h = s.get("http", {})
    return [
        ("HTTP throughput ratio", _interval(h.get("saturation")), "≥", THROUGHPUT_RATIO_MIN),
        ("HTTP p99 ratio at half rate", _interval(h.get("paced")), "≤", P99_RATIO_MAX),
        ("batch ratio", _interval(s.get("batch")), "≥", BATCH_RATIO_MIN),
    ]


def _unsettled_note(s: dict[str, dict[str, Any]]) -> str:
    open_ = [
        f"{name} ({i.low:.2f} to {i.high:.2f} against {op} {bound:g})"
        for name, i, op, bound in _ratio_intervals(s)
        if i is not None and not settles(i, op, bound)
    ]
    if not open_:
        return ""
    return (
        "\n\nNot settled by this run: the interval of the median of rounds straddles the target for "
        + "; ".join(open_)
        + ". Its yes or NO is this run's median, which the machine's noise could have put on either side."
    )


def _summary(s: dict[str, dict[str, Any]]) -> str:
    rows = []
    for section, figure, value, op, bound, fmt in targets(s):
        shown = "not measured" if value is None else fmt.format(value)
        rows.append([section, figure, shown, check(value, op, bound, "{:g}")])
    failed = [name for name, data in s.items() if "error" in data]
    note = f"\n\nMeasurement failed in: {', '.join(failed)} (details in those sections)." if failed else ""
    summary = table(["section", "figure", "value", "target / met?"], rows)
    return "## Summary\n\n" + summary + _unsettled_note(s) + note


def _http(h: dict[str, Any], results: dict[str, Any]) -> str:
    title = "## 1. HTTP: /v1/triage against the control endpoint"
    if failed := _failed(h):
        return f"{title}\n\n{failed}"
    sat, pace = h["saturation"], h["paced"]
    t, c = "triage", "control"
    rows = [
        ["POST /v1/triage", f"{sat['rate'][t]:.0f}", f"{sat['p50_ms'][t]:.2f}", f"{sat['p99_ms'][t]:.2f}", "-"],
        ["POST /bench/control", f"{sat['rate'][c]:.0f}", f"{sat['p50_ms'][c]:.2f}", f"{sat['p99_ms'][c]:.2f}", "-"],
        [
            "ratio triage ÷ control, median of rounds",
            f"{sat['ratio_median']:.2f}",
            "",
            "",
            check(sat["ratio_median"], "≥", THROUGHPUT_RATIO_MIN),
        ],
        interval_row(sat, "≥", THROUGHPUT_RATIO_MIN),
        ["ratio triage ÷ control, all rounds together", f"{sat['ratio_total']:.2f}", "", "", "-"],
        *_cpu_rows(sat),
    ]
    sat_table = table(["endpoint", "requests/s", "p50 ms", "p99 ms", "target / met?"], rows)
    prow = [
        [
            "POST /v1/triage",
            f"{pace['rate'][t]:.0f}",
            f"{pace['p50_ms'][t]:.2f}",
            f"{pace['p99_ms'][t]:.2f}",
            "-",
        ],
        [
            "POST /bench/control",
            f"{pace['rate'][c]:.0f}",
            f"{pace['p50_ms'][c]:.2f}",
            f"{pace['p99_ms'][c]:.2f}",
            "-",
        ],
        [
            "p99 ratio triage ÷ control, median of rounds",
            "",
            "",
            f"{pace['ratio_median']:.2f}",
            check(pace["ratio_median"], "≤", P99_RATIO_MAX),
        ],
        interval_row(pace, "≤", P99_RATIO_MAX, at=3),
        ["p99 ratio of the medians", "", "", f"{pace['ratio_of_medians']:.2f}", "-"],
    ]
    pace_table = table(["endpoint", "achieved req/s", "p50 ms", "p99 ms", "target / met?"], prow)
    budget = results["budget"]
    return f"""{title}

### Throughput at saturation

{sat_table}

Per-round ratios: {_rounds(sat["round_ratios"])}. Control requests/s per round:
{_rounds([r["rate"] for r in sat["runs"]["control"]], "{:.0f}")}; triage:
{_rounds([r["rate"] for r in sat["runs"]["triage"]], "{:.0f}")}.

Workers' CPU per request, control ÷ triage, per round: {_rounds(sat.get("cpu_round_ratios") or [])}.
That is the gunicorn workers' user and system time over the run's requests (`/proc`, rounds in
which a worker was recycled left out): what the throughput ratio would be if requests/s followed
the service's own CPU alone. It is shown to tell the service's cost from the machine's noise; the
target is judged on requests/s.

### Latency at half the control's saturating rate

Target offered rate {pace["target_rate"]:.0f} requests/s (half the control's {sat["rate"][c]:.0f}) for both endpoints.

{pace_table}

Per-round p99 ratios: {_rounds(pace["round_ratios"])}. Per round, triage p99 ms:
{_rounds([r["p99_ms"] for r in pace["runs"]["triage"]])}; control:
{_rounds([r["p99_ms"] for r in pace["runs"]["control"]])}.

**How measured.** One gunicorn (the production config, app `bench.app:create_bench_app()`: the service
plus `POST /bench/control`) serves both endpoints. The control goes through the same request cycle
(access check, request log, metrics, security headers) and the same strict JSON parser, then answers
canned bytes of the same size as the triage answer to that body; the difference is validation, the
engine, encoding and the audit line. Load: wrk, 1 thread, {sat["connections"]} keep-alive connections,
cycling the {h["bodies"]} bodies of `bench.workload.scenario_mix()` (each clinical scenario complete,
then partial). Saturation: {sat["rounds"]} rounds of {sat["seconds"]:g} s per endpoint after
{budget["warmup_seconds"]:g} s of warm-up each, the order alternating every round; requests/s is all
rounds' requests over their time, p50 and p99 the median over rounds of wrk's per-run percentiles.
Half rate: wrk sends on a fixed schedule, one request every 1/rate s whenever a connection is free
(Lua `delay()` on the monotonic clock, `bench/wrk.py`), so both endpoints are offered the same rate
whatever their latency; the achieved rates are shown. {pace["rounds"]} alternating rounds of
{pace["seconds"]:g} s. Latency counts from the moment a request is written: a send slot missed while
all {pace["connections"]} connections were busy is not counted, so p99 here is a floor. Any
failed request (non-2xx or socket error) in any wrk run fails the benchmark. gunicorn booted
{h["worker_boots"]} workers during sections 1 and 4 (beyond the first {results["gunicorn"]["workers"]}: workers
recycled by max_requests; with the app preloaded a restart is a fork).

wrk opens its connections in one burst, and on gunicorn's shared listening socket the first worker
to wake can take all of them while the other idles: such a run measures connection placement, not
the service. So every {wrk.RECYCLE_EVERY}th request of a run asks for its connection to be closed
and wrk opens a new one, as nginx renews its keep-alive connections to the replicas
(`keepalive_requests`); the connection count stays fixed. As a check, a run in which the least busy
worker still used under half the CPU of the busiest is taken again (at most
{http.BALANCE_ATTEMPTS - 1} times); {h.get("repeated_runs", 0)} run(s) were taken again in sections 1 and 4."""


def _speed(results: dict[str, Any]) -> str:
    speed = results.get("machine_speed_ms")
    if not speed:
        return "not measured"
    return (
        f"{speed['start']:.1f} at the start, {speed['engine']:.1f} before section 2, {speed['end']:.1f} at the end"
        " (lower is faster; the absolute figures below scale with it)"
    )


def _engine(e: dict[str, Any]) -> str:
    title = "## 2. Engine alone, in process"
    if failed := _failed(e):
        return f"{title}\n\n{failed}"
    rows = e["scaling"]
    base = rows[0]
    out = []
    for r in rows:
        if r is base:
            target = check(r["p50_us"], "≤", ENGINE_P50_MAX_US, "{:g} µs")
        elif r["factor"] == ENGINE_GROWTH_FACTOR:
            target = check(r["ratio_p50"], "≤", ENGINE_GROWTH_MAX, "{:g}x the 1x p50")
        else:
            target = "-"
        per_rule = "-" if r["ns_per_added_rule"] is None else f"{r['ns_per_added_rule']:.1f}"
        out.append(
            [
                f"{r['factor']}x",
                r["rules"],
                f"{r['p50_us']:.1f}",
                f"{r['p99_us']:.1f}",
                f"{r['mean_us']:.1f}",
                f"{r.get('complete_p50_us', math.nan):.1f}",
                f"{r.get('partial_p50_us', math.nan):.1f}",
                f"{r['ratio_p50']:.2f}",
                per_rule,
                target,
            ]
        )
    header = [
        "knowledge",
        "rules",
        "p50 µs",
        "p99 µs",
        "mean µs",
        "complete p50 µs",
        "partial p50 µs",
        "p50 ÷ 1x",
        "ns per added rule",
        "target / met?",
    ]
    b = e["bundled"]
    bundled = table(
        ["knowledge", "evaluations", "p50 µs", "p99 µs", "mean µs", "target / met?"],
        [
            [
                "bundled (`load_knowledge()`)",
                b["evaluations"],
                f"{b['p50_us']:.1f}",
                f"{b['p99_us']:.1f}",
                f"{b['mean_us']:.1f}",
                check(b["p50_us"], "≤", ENGINE_P50_MAX_US, "{:g} µs"),
            ]
        ],
    )
    return f"""{title}

{table(header, out)}

{bundled}

**How measured.** `service.engine.evaluate(kb, request)` called directly, no web stack and no JSON, on
{e["requests"]} request bodies from the scenario mix (the same bodies HTTP sends; complete exams first,
then partial). Scaling (`bench.engine.scaling`): synthetic knowledge bases of 1x, 10x, 100x the real
rule count (every real rule copied with two extra abnormal-finding conditions, built by the loader's own
builder), each timed per evaluation over {e["repeat"]} passes that alternate between sizes (rotating
order; each timed pass follows an untimed one of the same size, as a service runs one knowledge
base), after a warm-up; the 1x base is the bundled knowledge, and its row is the yardstick of the
others. Second table: `bench.engine.time_evaluations` on the knowledge as loaded by the service,
{e["evaluations_repeat"]} passes. Nearest-rank percentiles, garbage collector on."""


def _zen(z: dict[str, Any]) -> str:
    title = "## 3. zen-engine as a peer"
    if failed := _failed(z):
        return f"{title}\n\n{failed}"
    ratio = z["ratio_ours_full_answer_over_zen_level_only_p50"]
    rows = [
        [
            "ours: `evaluate` (full answer)",
            f"{z['ours_full_answer_p50_us']:.1f}",
            f"{z['ours_full_answer_p99_us']:.1f}",
            "-",
        ],
        [
            "zen: `ZenEngine.evaluate` (level only)",
            f"{z['zen_level_only_p50_us']:.1f}",
            f"{z['zen_level_only_p99_us']:.1f}",
            "-",
        ],
        ["ratio ours ÷ zen (p50)", f"{ratio:.2f}", "", check(ratio, "≤", ZEN_RATIO_MAX)],
        [
            "zen: `ZenDecision.evaluate` (slow path, for reference)",
            f"{z['zen_decision_object_level_only_p50_us']:.1f}",
            f"{z['zen_decision_object_level_only_p99_us']:.1f}",
            "-",
        ],
    ]
    return f"""{title}

{table(["engine", "p50 µs per decision", "p99 µs", "target / met?"], rows)}

Both engines agree on the triage level for {z["agree"]} of {z["requests"]} requests.

**How measured.** `bench.zen.compare`: the level-setting rules generated into a GoRules decision table
({z["rows"]} rows, hit policy "first"), evaluated in process by zen-engine through its keyed fast path.
What each side computes differs, in zen's favour:

- ours: {z["ours_computes"]};
- zen: {z["zen_computes"]}.

{z["repeat"]} rounds over {z["requests"]} requests, both sides back to back per request, the side
going first alternating per round; {z["decisions_timed"]} decisions timed per side. Any disagreement on a
level fails the benchmark."""


def _batch(b: dict[str, Any], results: dict[str, Any]) -> str:
    title = "## 4. Batch: POST /v1/triage/batch against single calls"
    if failed := _failed(b):
        return f"{title}\n\n{failed}"
    if not b.get("available"):
        return f"""{title}

Not measured: this build does not serve `POST /v1/triage/batch` (404/405).

| figure | target / met? |
|---|---|
| cases/s batch ÷ single calls | ≥ {BATCH_RATIO_MIN:g} / not measured |"""
    rows = [
        [
            "batch",
            f"{b['cases_per_s']['batch']:.0f}",
            f"{b['p50_ms']['batch']:.2f}",
            f"{b['p99_ms']['batch']:.2f}",
            "-",
        ],
        [
            "single calls",
            f"{b['cases_per_s']['single']:.0f}",
            f"{b['p50_ms']['single']:.2f}",
            f"{b['p99_ms']['single']:.2f}",
            "-",
        ],
        [
            "ratio batch ÷ single, median of rounds",
            f"{b['ratio_median']:.2f}",
            "",
            "",
            check(b["ratio_median"], "≥", BATCH_RATIO_MIN),
        ],
        interval_row(b, "≥", BATCH_RATIO_MIN),
        ["ratio batch ÷ single, all rounds together", f"{b['ratio_total']:.2f}", "", "", "-"],
    ]
    recycling = ""
    if results["gunicorn"]["max_requests"] != "0":
        recycling = (
            f" max_requests counts requests, not cases, so single calls recycle workers {b['cases']}x as often"
            f" as batches do (gunicorn booted {b['worker_boots']} workers during sections 1 and 4)."
        )
    return f"""{title}

{table(["mode", "cases/s", "p50 ms per request", "p99 ms per request", "target / met?"], rows)}

Per-round ratios: {_rounds(b["round_ratios"])}.

**How measured.** The same server as section 1. {b["cases"]} cases from the scenario mix (cycled) as one
body `{{"cases": [...]}}` ({b["body_bytes"]} bytes; answer {b["answer_bytes"]} bytes) sent over and over,
against the same {b["cases"]} bodies as single `POST /v1/triage` calls, wrk cycling them. Before timing,
the batch answer is checked case by case against the single calls (index, status, answer) and its counts.
wrk, {b["connections"]} connections, {b["rounds"]} alternating rounds of {b["seconds"]:g} s each (after
{results["budget"]["warmup_seconds"]:g} s of warm-up each); cases/s for the batch is requests/s x
{b["cases"]}.{recycling}"""


def _cds(c: dict[str, Any]) -> str:
    title = "## 5. CDS Hooks: a card response against /v1/triage"
    if failed := _failed(c):
        return f"{title}\n\n{failed}"
    cds, triage = c["cds"], c["triage"]
    spec = c["spec_target_ms"]
    rows = [
        [
            name,
            f"{cds[name]:.2f}",
            f"{triage[name]:.2f}",
            f"{cds[name] / triage[name]:.2f}",
            check(cds[name], "≤", spec, "{:g} ms") if name == "p99" else "-",
        ]
        for name in ("p50", "p90", "p99", "max")
    ]
    return f"""{title}

{table(["percentile", "CDS Hooks call ms", "/v1/triage ms", "ratio", "target / met?"], rows)}

**How measured.** `bench.cds_hooks.run`: a typical `patient-view` call through the production gunicorn
config with JWT verification on (ES384, keys from a file): {c["observations"]} Observations, a Patient and
a Condition in the prefetch ({c["prefetch_bytes"]} bytes). {c["requests"]} sequential calls over one
keep-alive connection, in {c["rounds"]} rounds alternating with `POST /v1/triage` on the same findings (the
yardstick), so the figures are the service's own latency, not queueing. Milliseconds, client side,
loopback. The target is the CDS Hooks specification's "on the order of {spec:.0f} ms" (which includes
the EHR's own time)."""


def _cold(c: dict[str, Any]) -> str:
    title = "## 6. Cold start"
    if failed := _failed(c):
        return f"{title}\n\n{failed}"
    rows = [
        [
            "start to first 200 from /readyz",
            f"{c['median_s']:.2f}",
            _rounds(c["times_s"]),
            check(c["median_s"], "<", COLD_START_MAX_S, "{:g} s"),
        ]
    ]
    return f"""{title}

{table(["figure", "median s", "each run s", "target / met?"], rows)}

**How measured.** `python -m gunicorn -c deploy/gunicorn.conf.py 'service:create_app()'` started
{c["repeat"]} time(s), each from a new process (imports, knowledge load and checks, workers forked), timed
from starting the process to the first 200 from `GET /readyz`, polled every 10 ms; the median."""


def _profile() -> str:
    title = "## Profile and what changed"
    if PROFILE_NOTES.exists():
        return f"{title}\n\n{PROFILE_MARKER}\n\n{PROFILE_NOTES.read_text(encoding='utf-8').strip()}"
    return (
        f"{title}\n\n{PROFILE_MARKER}\n\n"
        "_Placeholder: the profile notes go here. Write them in `bench/profile_notes.md`; the next "
        "`make bench` puts that file's text in place of this paragraph._"
    )


# --- the figure ---------------------------------------------------------------------------------------


def figure(results: dict[str, Any], path: Path) -> None:
    """Two panels: engine p50/p99 against rule count (log-log), latency distributions (CDF, log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["sections"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    _scaling_panel(left, s.get("engine", {}))
    _distribution_panel(right, s.get("http", {}), s.get("engine", {}))
    fig.suptitle(
        f"legraise-triage benchmark, {results['started']:%Y-%m-%d %H:%M} UTC (budget {results['budget']['name']})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _not_measured(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}: not measured", ha="center", va="center", transform=ax.transAxes)


def _scaling_panel(ax: Any, e: dict[str, Any]) -> None:
    ax.set_title("Engine: time per evaluation against rule count")
    rows = e.get("scaling")
    if not rows:
        _not_measured(ax, "engine")
        return
    rules = [r["rules"] for r in rows]
    ax.loglog(rules, [r["p50_us"] for r in rows], "o-", label="p50")
    ax.loglog(rules, [r["p99_us"] for r in rows], "s--", label="p99")
    base = rows[0]
    target_rules = base["rules"] * ENGINE_GROWTH_FACTOR
    ax.axhline(
        ENGINE_GROWTH_MAX * base["p50_us"],
        color="tab:red",
        linestyle=":",
        label=f"target at {ENGINE_GROWTH_FACTOR}x rules: {ENGINE_GROWTH_MAX:g} x 1x p50",
    )
    ax.axhline(
        ENGINE_P50_MAX_US, color="tab:green", linestyle=":", label=f"target at 1x: p50 ≤ {ENGINE_P50_MAX_US:g} µs"
    )
    ax.axvline(target_rules, color="grey", linewidth=0.6)
    ax.set_xlim(base["rules"] / 1.5, max(max(rules), target_rules) * 1.5)
    ax.set_xlabel("rules in the knowledge base")
    ax.set_ylabel("µs per evaluation")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def _cdf(ax: Any, values_ms: list[float], fractions: list[float], label: str, style: str) -> None:
    ax.semilogx(values_ms, fractions, style, label=label)


def _distribution_panel(ax: Any, h: dict[str, Any], e: dict[str, Any]) -> None:
    from bench.wrk import PERCENTILES

    ax.set_title("Latency distributions")
    drawn = False
    pace = h.get("paced")
    if pace:
        rate = pace["target_rate"]
        for side, label, style in (("triage", "POST /v1/triage", "-"), ("control", "POST /bench/control", "--")):
            values = pace["percentiles_ms"][side]
            _cdf(ax, values, list(PERCENTILES), f"{label}, HTTP, {rate:.0f} req/s offered", style)
        drawn = True
    samples = e.get("samples_us")
    if samples:
        ordered = sorted(samples)
        n = len(ordered)
        _cdf(
            ax, [v / 1000 for v in ordered], [100 * (i + 1) / n for i in range(n)], "engine alone, per evaluation", "-."
        )
        drawn = True
    if not drawn:
        _not_measured(ax, "latency")
        return
    ax.set_xlabel("latency, ms (log)")
    ax.set_ylabel("percentile")
    ax.set_ylim(0, 100)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
