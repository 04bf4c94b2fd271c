"""Where a triage call spends its time, in process: pyinstrument over the WSGI app.

Calls POST /v1/triage (and, for comparison, the benchmark's control endpoint) through the app's WSGI
callable with the scenario mix, no network and no server, so the profile shows the request cycle,
validation, engine, encoding and logging alone. Logs go to /dev/null.

    python -m bench.profile [--calls N] [--path /v1/triage] [--html FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from pyinstrument import Profiler

from bench.workload import scenario_mix

# The parts of a WSGI environ that do not change between calls.
ENVIRON = {"REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1"}
ENVIRON |= {"SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_TYPE": "application/json"}
ENVIRON |= {"REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr}
ENVIRON |= {"wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0)}


def _environ(path: str, body: bytes) -> dict[str, Any]:
    return {**ENVIRON, "PATH_INFO": path, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}


def call_all(app: Any, path: str, bodies: list[bytes], calls: int) -> float:
    """Mean microseconds per call over `calls` calls cycling through the bodies."""

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        if not status.startswith("200"):
            raise RuntimeError(f"{path} answered {status}")

    started = time.perf_counter()
    for i in range(calls):
        b"".join(app.wsgi_app(_environ(path, bodies[i % len(bodies)]), start_response))
    return (time.perf_counter() - started) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--path", default="/v1/triage")
    parser.add_argument("--html", type=Path, help="also write pyinstrument's HTML view here")
    args = parser.parse_args(argv)
    from bench.app import create_bench_app

    bodies = [orjson.dumps(b) for b in scenario_mix()]
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        app = create_bench_app({"API_OPEN": True})  # in process only; no environment change
        call_all(app, args.path, bodies, 200)  # warm up
        control = call_all(app, "/bench/control", bodies, args.calls)
        profiler = Profiler(interval=0.0002)
        profiler.start()
        measured = call_all(app, args.path, bodies, args.calls)
        profiler.stop()
    print(f"{args.path}: {measured:.0f} µs per call under the profiler; /bench/control: {control:.0f} µs without")
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    if args.html:
        args.html.write_text(profiler.output_html())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
