"""Drive wrk (Debian package) with a Lua script that cycles through request bodies.

wrk is compiled and event-driven, so on this 2-core machine it takes far less CPU per request than
the server does. Fixed connections; each run prints one JSON line from wrk's `done` hook: counts,
the latency percentiles 1..99 and 99.9 (wrk keeps a histogram, not each request's latency), and the
failures by kind.

Pacing: wrk is closed-loop (a connection sends its next request when the answer is in), so on its
own it measures saturation. With `rate` > 0 the script holds a fixed schedule instead, one send
slot every 1/rate s on the monotonic clock (LuaJIT's ffi calls clock_gettime): whenever a connection
is ready for its next request, Lua `delay()` hands it the next free slot and wrk waits until then.
So every endpoint is offered the same rate, whatever its latency (as in wrk2's constant-throughput
mode, up to the connections open); a late slot is sent at once, so a stall is followed by catch-up
rather than by a lower rate. wrk's timers count whole milliseconds (a wait is cut to them; the slots
themselves stay exact). The latency wrk records starts when the request is written, so it never
includes the wait, and it does not count a slot missed while every connection was busy: p99 is a
floor.

Connections are renewed as a proxy renews them (RECYCLE_EVERY below), so a run measures the workers
rather than where the kernel put wrk's opening burst of connections.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

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
local headers = {["Content-Type"] = "application/json"}
local closing = {["Content-Type"] = "application/json", ["Connection"] = "close"}
local counter = 0

function setup(thread)
  thread:set("offset", counter)
  counter = counter + 7
end

function init(args)
  i = offset or 0
  sent = 0
end

function request()
  i = i %% #bodies + 1
  sent = sent + 1
  if recycle > 0 and sent %% recycle == 0 then
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
  local errors = summary.errors
  local marks = {}
  for _, p in ipairs({%(percentiles)s}) do
    marks[#marks + 1] = string.format("%%d", latency:percentile(p))
  end
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d, ' ..
    '"mean_us": %%f, "non2xx": %%d, "connect": %%d, "read": %%d, "write": %%d, "timeout": %%d, ' ..
    '"percentiles_us": [%%s]}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, errors.status,
    errors.connect, errors.read, errors.write, errors.timeout, table.concat(marks, ", ")))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    failures: int
    mean_ms: float = 0.0
    # failures by kind: non2xx, connect, read, write, timeout
    failure_kinds: dict[str, int] = field(default_factory=dict)
    # latency at each of PERCENTILES, ms (for a CDF)
    percentiles_ms: tuple[float, ...] = ()
    # CPU seconds (user + system) the server's workers spent during the run, when known
    worker_cpu_s: float | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk not found: run `bash tools/ensure-debian-packages.sh wrk`")
    return found


def wrk_version() -> str:
    """wrk's own version line (`wrk --version` prints it, then the usage, and exits 1)."""
    out = subprocess.run([wrk_binary(), "--version"], capture_output=True, text=True, timeout=10)
    return (out.stdout or out.stderr).splitlines()[0].strip()


def write_script(folder: Path, path: str, bodies: list[bytes], rate: float = 0.0, recycle: int = RECYCLE_EVERY) -> Path:
    """A script POSTing `bodies` in turn to `path`; `rate` > 0 paces each wrk thread to that many
    requests per second (the benchmark runs one thread), 0 sends as fast as answers come."""
    lua_bodies = ", ".join(_lua_string(b) for b in bodies)
    name = f"wrk-{path.strip('/').replace('/', '-')}-{len(bodies)}-{rate:.1f}-{recycle}.lua"
    script = folder / name
    script.write_text(
        _SCRIPT
        % {
            "bodies": lua_bodies,
            "path": path,
            "rate": f"{max(0.0, rate):.6f}",
            "recycle": max(0, recycle),
            "percentiles": ", ".join(f"{p:g}" for p in PERCENTILES),
        }
    )
    return script


def _lua_string(body: bytes) -> str:
    # Long brackets take the JSON verbatim; the level is raised until the body cannot close it.
    level = 0
    text = body.decode()
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def run_wrk(url: str, script: Path, *, connections: int, seconds: float, threads: int = 1) -> WrkResult:
    command = [
        wrk_binary(),
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=10s",
        f"--script={script}",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk exited with {done.returncode}: {(done.stderr or done.stdout).strip()[-500:]}")
    line = lines[-1]
    data = json.loads(line)
    kinds = {k: data[k] for k in ("non2xx", "connect", "read", "write", "timeout")}
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        failures=sum(kinds.values()),
        mean_ms=data["mean_us"] / 1000,
        failure_kinds=kinds,
        percentiles_ms=tuple(v / 1000 for v in data["percentiles_us"]),
    )
