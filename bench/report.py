"""The benchmark report: markdown (docs/performance.md) and its figure (docs/performance.png).

Every table has a "target / met?" column; a section whose measurement failed shows the error in its
place. The "Profile and what changed" section is bench/profile_notes.md when it exists, after the
`<!-- profile notes -->` marker, else a placeholder paragraph.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import http, wrk
from bench.http import SPEC_TARGET_MS
from bench.stats import Interval, settles

ROOT = Path(__file__).resolve().parents[1]
PROFILE_NOTES = ROOT / "bench" / "profile_notes.md"
PROFILE_MARKER = "<!-- profile notes -->"
PLACEHOLDER = (
    "_Placeholder: the profile notes go here. Write them in `bench/profile_notes.md`; the next "
    "`make bench` puts that file's text in place of this paragraph._"
)
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
# issue 22: a request cycle that costs what it must, measured against bare Flask (bench/bare.py)
TRIAGE_BARE_RATIO_MIN = 0.80  # /v1/triage req/s over bare Flask's
CONTROL_BARE_RATIO_MIN = 0.90  # the control's req/s over bare Flask's: the service's request cycle alone

# The summary: (section, figure, op, bound, value format), in the order of target_values.
TARGETS = (
    ("1. HTTP", "throughput /v1/triage ÷ control (median of rounds)", "≥", THROUGHPUT_RATIO_MIN, "{:.2f}"),
    ("1. HTTP", "throughput /v1/triage ÷ bare Flask (median of rounds)", "≥", TRIAGE_BARE_RATIO_MIN, "{:.2f}"),
    ("1. HTTP", "throughput in-app control ÷ bare Flask (median of rounds)", "≥", CONTROL_BARE_RATIO_MIN, "{:.2f}"),
    ("1. HTTP", "p99 /v1/triage ÷ control at half rate (median of rounds)", "≤", P99_RATIO_MAX, "{:.2f}"),
    ("2. Engine", "p50 µs per evaluation, 1x knowledge", "≤", ENGINE_P50_MAX_US, "{:.1f}"),
    ("2. Engine", f"p50 at {ENGINE_GROWTH_FACTOR}x rules ÷ p50 at 1x", "≤", ENGINE_GROWTH_MAX, "{:.2f}"),
    ("3. zen-engine", "ours ÷ zen, p50 per decision", "≤", ZEN_RATIO_MAX, "{:.2f}"),
    ("4. Batch", "cases/s batch ÷ single calls (median of rounds)", "≥", BATCH_RATIO_MIN, "{:.2f}"),
    ("5. CDS Hooks", "p99 ms of a card response", "≤", SPEC_TARGET_MS, "{:.1f}"),
    ("6. Cold start", "median s to first 200 from /readyz", "<", COLD_START_MAX_S, "{:.2f}"),
)
ENDPOINTS = (("triage", "POST /v1/triage"), ("control", "POST /bench/control"))
SATURATED = (*ENDPOINTS, ("bare", "POST /bench/bare (bare Flask)"))


def target_values(s: dict[str, dict[str, Any]]) -> list[float | None]:
    """The value of every target in TARGETS (None: not measured)."""
    h, scaling = s.get("http", {}), s.get("engine", {}).get("scaling") or []
    bare = (h.get("saturation") or {}).get("bare") or {}
    return [
        (h.get("saturation") or {}).get("ratio_median"),
        (bare.get("triage") or {}).get("ratio_median"),
        (bare.get("control") or {}).get("ratio_median"),
        (h.get("paced") or {}).get("ratio_median"),
        scaling[0]["p50_us"] if scaling else None,
        next((r["ratio_p50"] for r in scaling if r["factor"] == ENGINE_GROWTH_FACTOR), None),
        s.get("zen", {}).get("ratio_ours_full_answer_over_zen_level_only_p50"),
        s.get("batch", {}).get("ratio_median"),
        s.get("cds", {}).get("cds", {}).get("p99"),
        s.get("cold", {}).get("median_s"),
    ]


# --- cells and tables --------------------------------------------------------------------------------


def check(value: float | None, op: str, bound: float, fmt: str = "{:g}") -> str:
    """The "target / met?" cell: `≥ 0.85 / yes` or `≥ 0.85 / **NO**`."""
    target = f"{op} {fmt.format(bound)}"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{target} / not measured"
    ok = {"≥": value >= bound, "≤": value <= bound, "<": value < bound}[op]
    return f"{target} / {'yes' if ok else '**NO**'}"


def settled_cell(interval: Interval | None, op: str, bound: float) -> str:
    if interval is not None and settles(interval, op, bound):  # wholly on one side: either end says which
        met = interval.low >= bound if op == "≥" else interval.high <= bound if op == "≤" else interval.high < bound
        return f"wholly on one side of {bound:g}: {'met' if met else '**missed**'}, settled by this run"
    return f"straddles {bound:g}: **not settled** by this run"


def _interval(data: dict[str, Any] | None, key: str = "ratio_interval") -> Interval | None:
    found = (data or {}).get(key)  # a list once the results have been through JSON
    return Interval(*found) if found else None


def _interval_cells(interval: Interval | None) -> tuple[str, str]:
    """(its coverage, its bounds) as the tables show them."""
    if interval is None:
        return "90%", "too few rounds"
    return f"{interval.coverage:.0%}", f"{interval.low:.2f} to {interval.high:.2f}"


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _rounds(values: list[float], fmt: str = "{:.2f}") -> str:
    return ", ".join(fmt.format(v) for v in values)


def _side_rows(
    data: dict[str, Any], sides: tuple[tuple[str, str], ...], rate: str = "rate", cpu: bool = False
) -> list[list[str]]:
    """One row per side: rate, p50 and p99 ms (medians over rounds), the workers' CPU µs per request if
    `cpu`, no target."""
    rows = [[name, f"{data[rate][s]:.0f}", f"{data['p50_ms'][s]:.2f}", f"{data['p99_ms'][s]:.2f}"] for s, name in sides]
    if cpu:
        us = [data["cpu_us_per_request"][s] for s, _ in sides]
        rows = [[*row, "not measured" if u is None else f"{u:.0f}"] for row, u in zip(rows, us, strict=True)]
    return [[*row, "-"] for row in rows]


def _ratio_rows(
    data: dict[str, Any],
    what: str,
    op: str,
    bound: float,
    at: int = 1,
    total: tuple[str, str] | None = None,
    columns: int = 3,
) -> list[list[str]]:
    """A median-of-rounds ratio (in column `at`) and its target; the distribution-free interval of that
    median and whether it settles the target (lies wholly on one side of it) or leaves it to the noise;
    the ratio of the totals."""
    interval = _interval(data)
    coverage, within = _interval_cells(interval)
    label, key = total or (f"{what}, all rounds together", "ratio_total")
    rows = [
        [f"{what}, median of rounds", f"{data['ratio_median']:.2f}", check(data["ratio_median"], op, bound)],
        [
            f"{coverage} interval of that median (order statistics of the rounds)",
            within,
            settled_cell(interval, op, bound),
        ],
        [label, f"{data[key]:.2f}", "-"],
    ]
    return [[first, *("" if i != at else value for i in range(1, columns + 1)), last] for first, value, last in rows]


# --- markdown -----------------------------------------------------------------------------------------


def render(results: dict[str, Any], png_name: str) -> str:
    s, budget = results["sections"], results["budget"]["name"]
    parts = [_header(results)]
    if budget != "full":
        parts.append(f"> **Budget `{budget}`**: a smoke run of the benchmark code; the figures mean nothing.")
    parts.append(_summary(s))
    for title, key, body in SECTIONS:
        data = s.get(key, {})
        if "error" in data:
            failed = table(["figure", "target / met?"], [["every figure of this section", "not measured"]])
            parts.append(f"{title}\n\n**Measurement failed**: `{data['error']}`\n\n{failed}")
        else:
            parts.append(f"{title}\n\n{body(data, results)}")
    parts.append(
        f"## Figure\n\n![engine scaling and latency distributions]({png_name})\n\nLeft: the engine's p50 and p99 "
        f"per evaluation against the number of rules (log-log), with the targets ({ENGINE_P50_MAX_US:g} µs at 1x; "
        f"{ENGINE_GROWTH_MAX:g}x the 1x p50 at {ENGINE_GROWTH_FACTOR}x). Right: latency as cumulative curves (log "
        "axis): both endpoints at half the control's saturating rate (wrk's percentiles, averaged per percentile "
        "over the rounds), and the engine's own time per evaluation in process."
    )
    notes = PROFILE_NOTES.read_text(encoding="utf-8").strip() if PROFILE_NOTES.exists() else PLACEHOLDER
    parts.append(f"## Profile and what changed\n\n{PROFILE_MARKER}\n\n{notes}")
    return "\n\n".join(p.strip() for p in parts) + "\n"


def _context(results: dict[str, Any]) -> list[list[str]]:
    """The machine, its load and its speed during the run."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError, IndexError):
        cpu = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name"))
        cpu = cpu.split(":", 1)[1].strip()
    load = [" / ".join(f"{x:.2f}" for x in results[k]) for k in ("load_before", "load_after")]
    speed = results["machine_speed_ms"]
    return [
        ["CPU", cpu],
        ["cores", f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable by this process)"],
        ["Python", f"{platform.python_implementation()} {platform.python_version()}"],
        ["platform", platform.platform()],
        ["load average (1/5/15 min)", f"{load[0]} at the start, {load[1]} at the end"],
        [
            "machine speed: ms for `sum(range(10**6))`, best of 5",
            f"{speed['start']:.1f} at the start, {speed['engine']:.1f} before section 2, {speed['end']:.1f} at "
            "the end (lower is faster; the absolute figures below scale with it)",
        ],
    ]


def _versions() -> list[list[str]]:
    rows = []
    for name in PACKAGES:
        try:
            rows.append([name, metadata.version(name)])
        except metadata.PackageNotFoundError:
            rows.append([name, "not installed"])
    try:
        rows.append(["wrk", wrk.wrk_version()])
    except (OSError, RuntimeError, IndexError) as exc:
        rows.append(["wrk", f"unavailable ({exc})"])
    return rows


def _header(results: dict[str, Any]) -> str:
    g = results["gunicorn"]
    return f"""# Performance

Generated by `make bench` (`python -m bench --budget {results["budget"]["name"]}`) on
{results["started"]:%Y-%m-%d %H:%M} UTC in {results["seconds"]:.0f} s. Every figure is taken in this one run
beside its yardstick, as a ratio and in absolute numbers: the machine is shared and noisy, absolute numbers
drift between runs, ratios hold. Exit status 0 means every figure was taken; a missed target is marked **NO**.

{table(["machine", ""], _context(results))}

{table(["software", "version"], _versions())}

Serving: `python -m gunicorn -c deploy/gunicorn.conf.py` (the production config), gthread, {g["workers"]}
workers x {g["threads"]} threads, max_requests {g["max_requests"]} (+ jitter), log level {g["log_level"]} (a
JSON line per request and an audit line per decision, to a log file, and Prometheus metrics in multiprocess
mode), app preloaded in the master; /v1 and the control need an API key (`X-API-Key`, checked as in
production); GUNICORN_CMD_ARGS=`{g["extra_args"] or "(none)"}`."""


def _summary(s: dict[str, dict[str, Any]]) -> str:
    rows = [
        [section, figure, "not measured" if value is None else fmt.format(value), check(value, op, bound)]
        for (section, figure, op, bound, fmt), value in zip(TARGETS, target_values(s), strict=True)
    ]
    h = s.get("http", {})
    bare = (h.get("saturation") or {}).get("bare") or {}
    judged = [
        ("HTTP throughput ratio", _interval(h.get("saturation")), "≥", THROUGHPUT_RATIO_MIN),
        ("HTTP throughput ratio triage ÷ bare Flask", _interval(bare.get("triage")), "≥", TRIAGE_BARE_RATIO_MIN),
        ("HTTP throughput ratio control ÷ bare Flask", _interval(bare.get("control")), "≥", CONTROL_BARE_RATIO_MIN),
        ("HTTP p99 ratio at half rate", _interval(h.get("paced")), "≤", P99_RATIO_MAX),
        ("batch ratio", _interval(s.get("batch")), "≥", BATCH_RATIO_MIN),
    ]
    unsettled = [
        f"{name} ({i.low:.2f} to {i.high:.2f} against {op} {bound:g})"
        for name, i, op, bound in judged
        if i is not None and not settles(i, op, bound)
    ]
    text = "## Summary\n\n" + table(["section", "figure", "value", "target / met?"], rows)
    if unsettled:
        text += (
            "\n\nNot settled by this run: the interval of the median of rounds straddles the target for "
            f"{'; '.join(unsettled)}. Its yes or NO is this run's median, which noise could have put either side."
        )
    if failed := [name for name, data in s.items() if "error" in data]:
        text += f"\n\nMeasurement failed in: {', '.join(failed)} (details in those sections)."
    return text


def _http(h: dict[str, Any], results: dict[str, Any]) -> str:
    sat, pace = h["saturation"], h["paced"]
    cpu, (coverage, within) = sat["cpu_ratio_median"], _interval_cells(_interval(sat, "cpu_ratio_interval"))
    cpu_row = "workers' CPU per request, control ÷ triage, median of rounds"
    bare = sat["bare"]
    sat_rows = [
        *_side_rows(sat, SATURATED, cpu=True),
        *_ratio_rows(sat, "ratio triage ÷ control", "≥", THROUGHPUT_RATIO_MIN, columns=4),
        *_ratio_rows(bare["triage"], "ratio triage ÷ bare Flask", "≥", TRIAGE_BARE_RATIO_MIN, columns=4),
        *_ratio_rows(bare["control"], "ratio control ÷ bare Flask", "≥", CONTROL_BARE_RATIO_MIN, columns=4),
        [cpu_row, "not measured" if cpu is None else f"{cpu:.2f}", "", "", "", "- (not a target)"],
        [f"{coverage} interval of that median", within, "", "", "", "-"],
    ]
    medians = ("p99 ratio of the medians", "ratio_of_medians")
    pace_rows = [
        *_side_rows(pace, ENDPOINTS),
        *_ratio_rows(pace, "p99 ratio triage ÷ control", "≤", P99_RATIO_MAX, 3, medians),
    ]
    rates = {side: _rounds([r["rate"] for r in rows], "{:.0f}") for side, rows in sat["runs"].items()}
    p99s = {side: _rounds([r["p99_ms"] for r in pace["runs"][side]]) for side in ("triage", "control")}
    return f"""### Throughput at saturation

{table(["endpoint", "requests/s", "p50 ms", "p99 ms", "workers' CPU µs per request", "target / met?"], sat_rows)}

Per-round ratios triage ÷ control: {_rounds(sat["round_ratios"])}; triage ÷ bare Flask:
{_rounds(bare["triage"]["round_ratios"])}; control ÷ bare Flask: {_rounds(bare["control"]["round_ratios"])}.
Requests/s per round, bare Flask: {rates["bare"]}; control: {rates["control"]}; triage: {rates["triage"]}.
Workers' CPU per request (user and system, `/proc`, over all of a server's workers; rounds that recycled a
worker left out), control ÷ triage, per round: {_rounds(sat["cpu_round_ratios"])}: what the ratio would be
if requests/s followed the service's own CPU alone, to tell its cost from the machine's noise (the targets
are on requests/s).

### Latency at half the control's saturating rate

Both endpoints offered {pace["target_rate"]:.0f} requests/s (half the control's {sat["rate"]["control"]:.0f}).

{table(["endpoint", "achieved req/s", "p50 ms", "p99 ms", "target / met?"], pace_rows)}

Per-round p99 ratios: {_rounds(pace["round_ratios"])}. Per round, triage p99 ms: {p99s["triage"]}; control:
{p99s["control"]}.

**How measured.** Two yardsticks, each answering the canned bytes of the triage answer to the same body
(worked out once at start). The in-app control, `/bench/control` on the same gunicorn as `/v1/triage`
(production config, app `{http.BENCH_APP}`), is the service's full request cycle (access check, JSON log
line, metrics, security headers, strict JSON parse) without validation, engine, encoding and audit line:
triage ÷ control is what the work costs. Bare Flask, `/bench/bare` (`{http.BARE_APP}`, Flask and the
standard library only, no service code), is Flask, its own JSON parse (`request.get_json()`) and the canned
bytes, served by a second gunicorn with the same command and config, up beside the first: control ÷ bare
is what the service's request cycle costs over Flask's, triage ÷ bare both. Every body is checked first to
get a 200 of the same size from all three. wrk, 1 thread, {sat["connections"]} keep-alive connections, cycling
the {h["bodies"]} bodies of `bench.workload.scenario_mix()`, each endpoint on its own server's URL; the order
of the endpoints is rotated every round (two: reversed). Saturation: {sat["rounds"]} rounds of {sat["seconds"]:g} s
per endpoint after {results["budget"]["warmup_seconds"]:g} s of warm-up; requests/s is all rounds' requests over
their time, p50, p99 and the workers' CPU µs per request the median of the rounds'. Half rate:
{pace["rounds"]} rounds of {pace["seconds"]:g} s of `/v1/triage` and the control on wrk's fixed send schedule
(`bench/wrk.py`); latency counts from the write, so a slot missed while all connections were busy is not
counted: p99 is a floor. Any failed request fails the benchmark. Every {wrk.RECYCLE_EVERY}th request renews its
connection, as nginx does (`keepalive_requests`), so one worker cannot keep wrk's opening burst while the other
idles; a run in which a worker used under half the CPU of the other is taken again (at most
{http.BALANCE_ATTEMPTS - 1} times): {h["repeated_runs"]} run(s) here and in section 4, where gunicorn booted
{h["worker_boots"]} workers (more than {results["gunicorn"]["workers"]}: recycled; bare Flask's gunicorn
{h["bare_worker_boots"]})."""


def _engine(e: dict[str, Any], results: dict[str, Any]) -> str:
    rows = []
    for r in e["scaling"]:
        target = "-"
        if r is e["scaling"][0]:
            target = check(r["p50_us"], "≤", ENGINE_P50_MAX_US, "{:g} µs")
        elif r["factor"] == ENGINE_GROWTH_FACTOR:
            target = check(r["ratio_p50"], "≤", ENGINE_GROWTH_MAX, "{:g}x the 1x p50")
        times = [r.get(k, math.nan) for k in ("p50_us", "p99_us", "mean_us", "complete_p50_us", "partial_p50_us")]
        per_rule = "-" if r["ns_per_added_rule"] is None else f"{r['ns_per_added_rule']:.1f}"
        rows.append(
            [f"{r['factor']}x", r["rules"], *(f"{t:.1f}" for t in times), f"{r['ratio_p50']:.2f}", per_rule, target]
        )
    header = ["knowledge", "rules", "p50 µs", "p99 µs", "mean µs", "complete p50 µs", "partial p50 µs", "p50 ÷ 1x"]
    b = e["bundled"]
    bundled = [
        "bundled (`load_knowledge()`)",
        b["evaluations"],
        *(f"{b[k]:.1f}" for k in ("p50_us", "p99_us", "mean_us")),
    ]
    bundled.append(check(b["p50_us"], "≤", ENGINE_P50_MAX_US, "{:g} µs"))
    return f"""{table([*header, "ns per added rule", "target / met?"], rows)}

{table(["knowledge", "evaluations", "p50 µs", "p99 µs", "mean µs", "target / met?"], [bundled])}

**How measured.** `service.engine.evaluate(kb, request)` called directly on {e["requests"]} bodies of the
scenario mix (complete exams, then partial). Scaling (`bench.engine.scaling`): knowledge bases of 1x, 10x,
100x the real rules (each copied with two extra abnormal-finding conditions), {e["repeat"]} timed passes each,
alternating sizes in rotating order, each after an untimed pass of the same size; 1x is the bundled knowledge.
Second table and figure: `bench.engine.time_evaluations`, {e["evaluations_repeat"]} passes. Nearest-rank
percentiles, garbage collector on."""


def _zen(z: dict[str, Any], results: dict[str, Any]) -> str:
    ratio = z["ratio_ours_full_answer_over_zen_level_only_p50"]
    p = {k: [f"{z[f'{k}_p{q}_us']:.1f}" for q in (50, 99)] for k in ("ours_full_answer", "zen_level_only")}
    slow = [f"{z[f'zen_decision_object_level_only_p{q}_us']:.1f}" for q in (50, 99)]
    rows = [
        ["ours: `evaluate` (full answer)", *p["ours_full_answer"], "-"],
        ["zen: `ZenEngine.evaluate` (level only)", *p["zen_level_only"], "-"],
        ["ratio ours ÷ zen (p50)", f"{ratio:.2f}", "", check(ratio, "≤", ZEN_RATIO_MAX)],
        ["zen: `ZenDecision.evaluate` (slow path, for reference)", *slow, "-"],
    ]
    return f"""{table(["engine", "p50 µs per decision", "p99 µs", "target / met?"], rows)}

Both engines agree on the triage level for {z["agree"]} of {z["requests"]} requests.

**How measured.** `bench.zen.compare`: the level-setting rules generated into a GoRules decision table
({z["rows"]} rows, hit policy "first") on zen-engine's keyed fast path, in process. Ours computes the whole
answer (facts, every rule, level, causes, referrals, advice, questions still to ask, trace, citations), zen
the flattened facts (`zen_input`) and the level only. {z["repeat"]} rounds over {z["requests"]} requests, both
sides back to back, the first alternating per round; {z["decisions_timed"]} decisions timed per side. Any
disagreement on a level fails the benchmark."""


def _batch(b: dict[str, Any], results: dict[str, Any]) -> str:
    rows = [
        *_side_rows(b, (("batch", "batch"), ("single", "single calls")), "cases_per_s"),
        *_ratio_rows(b, "ratio batch ÷ single", "≥", BATCH_RATIO_MIN),
    ]
    recycling = ""
    if results["gunicorn"]["max_requests"] != "0":
        recycling = f" max_requests counts requests, not cases: single calls recycle workers {b['cases']}x as often."
    return f"""{table(["mode", "cases/s", "p50 ms per request", "p99 ms per request", "target / met?"], rows)}

Per-round ratios: {_rounds(b["round_ratios"])}.

**How measured.** The server of section 1. {b["cases"]} cases of the scenario mix as one body
`{{"cases": [...]}}` ({b["body_bytes"]} bytes; answer {b["answer_bytes"]} bytes), checked case by case against single
calls first, against the same cases as single `POST /v1/triage` calls. wrk, {b["connections"]} connections,
{b["rounds"]} alternating rounds of {b["seconds"]:g} s after {results["budget"]["warmup_seconds"]:g} s of warm-up; the
batch's cases/s is its requests/s x {b["cases"]}.{recycling}"""


def _cds(c: dict[str, Any], results: dict[str, Any]) -> str:
    cds, triage = c["cds"], c["triage"]
    rows = [
        [p, *(f"{v:.2f}" for v in (cds[p], triage[p], cds[p] / triage[p])), "-"] for p in ("p50", "p90", "p99", "max")
    ]
    rows[2][-1] = check(cds["p99"], "≤", SPEC_TARGET_MS, "{:g} ms")
    return f"""{table(["percentile", "CDS Hooks call ms", "/v1/triage ms", "ratio", "target / met?"], rows)}

**How measured.** `bench.http.cds_hooks`: a typical `patient-view` call, production config, JWT verification
on (ES384): {c["observations"]} Observations, a Patient and a Condition in the prefetch ({c["prefetch_bytes"]}
bytes). {c["requests"]} sequential calls over one keep-alive connection in {c["rounds"]} rounds alternating with
`POST /v1/triage` on the same findings: the service's own latency, client side, loopback. The target is the
CDS Hooks specification's "on the order of {SPEC_TARGET_MS:.0f} ms" (EHR included)."""


def _cold(c: dict[str, Any], results: dict[str, Any]) -> str:
    target = check(c["median_s"], "<", COLD_START_MAX_S, "{:g} s")
    row = ["start to first 200 from /readyz", f"{c['median_s']:.2f}", _rounds(c["times_s"]), target]
    return f"""{table(["figure", "median s", "each run s", "target / met?"], [row])}

**How measured.** `python -m gunicorn -c deploy/gunicorn.conf.py 'service:create_app()'`, {c["repeat"]} new
process(es) (imports, knowledge load and checks, workers forked), from start to the first 200 from
`GET /readyz`, polled every {http.READY_POLL_S * 1000:.0f} ms; the median."""


SECTIONS = (
    ("## 1. HTTP: /v1/triage against the control endpoint and bare Flask", "http", _http),
    ("## 2. Engine alone, in process", "engine", _engine),
    ("## 3. zen-engine as a peer", "zen", _zen),
    ("## 4. Batch: POST /v1/triage/batch against single calls", "batch", _batch),
    ("## 5. CDS Hooks: a card response against /v1/triage", "cds", _cds),
    ("## 6. Cold start", "cold", _cold),
)


# --- the figure ---------------------------------------------------------------------------------------


def figure(results: dict[str, Any], path: Path) -> None:
    """Two panels: engine p50/p99 against rule count (log-log), latency distributions (CDF, log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["sections"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    panels = (
        (left, "Engine: time per evaluation against rule count", "engine", _scaling_panel(left, s.get("engine", {}))),
        (right, "Latency distributions", "latency", _latency_panel(right, s.get("http", {}), s.get("engine", {}))),
    )
    for ax, title, what, drawn in panels:
        ax.set_title(title)
        if drawn:
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8, loc="lower right" if ax is right else "best")
        else:
            ax.text(0.5, 0.5, f"{what}: not measured", ha="center", va="center", transform=ax.transAxes)
    started, budget = results["started"], results["budget"]["name"]
    fig.suptitle(f"legraise-triage benchmark, {started:%Y-%m-%d %H:%M} UTC (budget {budget})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _scaling_panel(ax: Any, e: dict[str, Any]) -> bool:
    rows = e.get("scaling")
    if not rows:
        return False
    rules, base = [r["rules"] for r in rows], rows[0]
    ax.loglog(rules, [r["p50_us"] for r in rows], "o-", label="p50")
    ax.loglog(rules, [r["p99_us"] for r in rows], "s--", label="p99")
    growth = f"target at {ENGINE_GROWTH_FACTOR}x rules: {ENGINE_GROWTH_MAX:g} x 1x p50"
    ax.axhline(ENGINE_GROWTH_MAX * base["p50_us"], color="tab:red", linestyle=":", label=growth)
    ax.axhline(
        ENGINE_P50_MAX_US, color="tab:green", linestyle=":", label=f"target at 1x: p50 ≤ {ENGINE_P50_MAX_US:g} µs"
    )
    ax.axvline(base["rules"] * ENGINE_GROWTH_FACTOR, color="grey", linewidth=0.6)
    ax.set_xlim(base["rules"] / 1.5, max(*rules, base["rules"] * ENGINE_GROWTH_FACTOR) * 1.5)
    ax.set(xlabel="rules in the knowledge base", ylabel="µs per evaluation")
    return True


def _latency_panel(ax: Any, h: dict[str, Any], e: dict[str, Any]) -> bool:
    pace, samples = h.get("paced"), e.get("samples_us")
    if pace:
        for (side, label), style in zip(ENDPOINTS, ("-", "--"), strict=True):
            curve = f"{label}, HTTP, {pace['target_rate']:.0f} req/s offered"
            ax.semilogx(pace["percentiles_ms"][side], list(wrk.PERCENTILES), style, label=curve)
    if samples:
        ordered, n = sorted(samples), len(samples)
        ax.semilogx(
            [v / 1000 for v in ordered],
            [100 * (i + 1) / n for i in range(n)],
            "-.",
            label="engine alone, per evaluation",
        )
    ax.set(xlabel="latency, ms (log)", ylabel="percentile", ylim=(0, 100))
    return bool(pace or samples)
