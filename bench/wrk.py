"""Drive wrk (Debian package) with a Lua script that cycles through request bodies; one thread.

wrk is compiled and event-driven: on this 2-core machine it takes far less CPU per request than the
server. Each run prints one JSON line from wrk's `done` hook: counts, latency percentiles (from wrk's
histogram) and failures by kind. wrk is closed-loop (a connection sends again when its answer is in),
so alone it measures saturation. With `rate` > 0 the script keeps a fixed schedule instead, one send
slot every 1/rate s on the monotonic clock: Lua `delay()` hands a ready connection the next free slot,
so every endpoint is offered the same rate whatever its latency (wrk2's constant throughput, up to the
connections open); a late slot is sent at once, so a stall is followed by catch-up, not a lower rate.
Latency starts when the request is written, so a slot missed while every connection was busy is not
counted: p99 is a floor.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

PERCENTILES = (*range(1, 100), 99.9)

# Every RECYCLE_EVERY-th request a wrk thread sends asks for the connection to be closed, and wrk
# opens a new one: the same connection count, each renewed about every RECYCLE_EVERY requests, as
# nginx renews its keep-alive connections to the replicas (keepalive_requests). Without it wrk's
# opening burst of connections can all land on one gunicorn worker and stay there for the run.
RECYCLE_EVERY = 100

_SCRIPT = """
local bodies = {%(bodies)s}
local rate = %(rate)s
local recycle = %(recycle)d
local headers = {%(headers)s}
local closing = {%(headers)s, ["Connection"] = "close"}
local i, sent = 0, 0

function request()
  i = i %% #bodies + 1
  sent = sent + 1
  if sent %% recycle == 0 then
    return wrk.format("POST", "%(path)s", closing, bodies[i])
  end
  return wrk.format("POST", "%(path)s", headers, bodies[i])
end

if rate > 0 then
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock_id, bench_timespec *tp);
  ]]
  local now = ffi.new("bench_timespec")
  local CLOCK_MONOTONIC = 1
  local interval = 1000 / rate

  local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, now)
    return tonumber(now.tv_sec) * 1000 + tonumber(now.tv_nsec) / 1e6
  end

  function delay()
    local t = now_ms()
    slot = (slot or t) + interval
    if slot <= t then
      return 0
    end
    return math.floor(slot - t)
  end
end

function done(summary, latency, requests)
  local e, marks = summary.errors, {}
  for _, p in ipairs({%(percentiles)s}) do
    marks[#marks + 1] = string.format("%%d", latency:percentile(p))
  end
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "max_us": %%d, "mean_us": %%f, "non2xx": %%d, "connect": %%d, ' ..
    '"read": %%d, "write": %%d, "timeout": %%d, "percentiles_us": [%%s]}\\n', summary.requests, summary.duration,
    latency.max, latency.mean, e.status, e.connect, e.read, e.write, e.timeout, table.concat(marks, ", ")))
end
"""


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk not found: run `bash tools/ensure-debian-packages.sh wrk`")
    return found


def wrk_version() -> str:
    """wrk's own version line (`wrk --version` prints it, then the usage, and exits 1)."""
    out = subprocess.run([wrk_binary(), "--version"], capture_output=True, text=True, timeout=10)
    return (out.stdout or out.stderr).splitlines()[0].strip()


def write_script(folder: Path, path: str, bodies: list[bytes], headers: dict[str, str], rate: float = 0.0) -> Path:
    """A script POSTing `bodies` in turn to `path` with `headers`; `rate` > 0 paces wrk's one thread to that
    many requests per second, 0 sends as fast as answers come."""
    script = folder / f"wrk-{path.strip('/').replace('/', '-')}-{len(bodies)}-{rate:.1f}.lua"
    values = {
        "bodies": ", ".join(_lua_string(b) for b in bodies),
        "path": path,
        "headers": ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()),  # ASCII
        "rate": f"{max(0.0, rate):.6f}",
        "recycle": RECYCLE_EVERY,
        "percentiles": ", ".join(f"{p:g}" for p in PERCENTILES),
    }
    script.write_text(_SCRIPT % values)
    return script


def _lua_string(body: bytes) -> str:
    # Long brackets take the JSON verbatim; the level is raised until the body cannot close it.
    level = 0
    text = body.decode()
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def run_wrk(url: str, script: Path, *, connections: int, seconds: float) -> dict[str, Any]:
    """One wrk run (one thread): requests, seconds, rate, latency in ms, failures (and by kind)."""
    command = [wrk_binary(), "--threads=1", f"--connections={connections}", f"--duration={max(1, round(seconds))}s"]
    command += ["--timeout=10s", f"--script={script}", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk exited with {done.returncode}: {(done.stderr or done.stdout).strip()[-500:]}")
    data = json.loads(lines[-1])
    kinds = {k: data[k] for k in ("non2xx", "connect", "read", "write", "timeout")}
    row = {"requests": data["requests"], "seconds": data["duration_us"] / 1e6}
    row["rate"] = row["requests"] / row["seconds"]
    row["percentiles_ms"] = [v / 1000 for v in data["percentiles_us"]]
    row |= {f"p{p}_ms": row["percentiles_ms"][PERCENTILES.index(p)] for p in (50, 90, 99)}
    row |= {"max_ms": data["max_us"] / 1000, "mean_ms": data["mean_us"] / 1000}
    return {**row, "failures": sum(kinds.values()), "failure_kinds": kinds}
