"""Render deploy/nginx/nginx.conf: fill its ${UPPER_CASE} placeholders (standard library only).

    python3 deploy/nginx/render.py > /etc/nginx/nginx.conf
    python3 deploy/nginx/render.py --listen 127.0.0.1:8080 --upstream 127.0.0.1:8001,127.0.0.1:8002 \\
        --runtime-dir /tmp/nginx-triage -o /tmp/nginx-triage/nginx.conf

Only ${NAME} with an upper-case NAME is a placeholder; nginx's own $variables are left alone, and so are
whole-line comments. Every placeholder must get a value and every value must be used: a typo fails here
instead of reaching nginx.
tests/live.py imports this file to run nginx in a temporary directory.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

TEMPLATE = Path(__file__).with_name("nginx.conf")
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
DEFAULT_UPSTREAMS = ("127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003")
DEFAULTS: dict[str, str] = {
    "LISTEN": "8080",
    "WORKER_PROCESSES": "auto",
    "NGINX_USER": "www-data www-data",
    "PID_FILE": "/run/nginx.pid",
    "ERROR_LOG": "/var/log/nginx/error.log",
    "ACCESS_LOG": "/var/log/nginx/access.log",
    "TEMP_DIR": "/var/lib/nginx",
    "RATE_LIMIT": "50r/s",
    "RATE_BURST": "100",
    "CONN_LIMIT": "64",
}
_ADDRESS = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$")


def upstream_lines(addresses: Iterable[str], max_fails: int = 1, fail_timeout: str = "10s") -> str:
    lines = []
    for address in addresses:
        if not _ADDRESS.match(address):
            raise ValueError(f"upstream address must be host:port, got {address!r}")
        lines.append(f"        server {address} max_fails={max_fails} fail_timeout={fail_timeout};")
    if not lines:
        raise ValueError("at least one upstream server is needed")
    return "\n".join(lines)


def runtime_paths(directory: str | Path) -> dict[str, str]:
    """pid file, logs and temp paths all inside one directory (an unprivileged or test instance)."""
    folder = Path(directory)
    return {
        "PID_FILE": str(folder / "nginx.pid"),
        "ERROR_LOG": str(folder / "error.log"),
        "ACCESS_LOG": str(folder / "access.log"),
        "TEMP_DIR": str(folder / "temp"),
    }


def render(values: Mapping[str, str], template: str | None = None) -> str:
    """Substitute on every line except whole-line comments (which document the placeholders)."""
    text = TEMPLATE.read_text(encoding="utf-8") if template is None else template
    lines = text.splitlines(keepends=True)
    is_code = [not line.lstrip().startswith("#") for line in lines]
    wanted = {name for line, code in zip(lines, is_code, strict=True) if code for name in PLACEHOLDER.findall(line)}
    missing, unused = wanted - set(values), set(values) - wanted
    if missing or unused:
        raise KeyError(f"placeholders without a value: {sorted(missing)}; values for no placeholder: {sorted(unused)}")
    return "".join(
        PLACEHOLDER.sub(lambda match: values[match.group(1)], line) if code else line
        for line, code in zip(lines, is_code, strict=True)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default=DEFAULTS["LISTEN"])
    parser.add_argument("--upstream", default=",".join(DEFAULT_UPSTREAMS), help="host:port,host:port,...")
    parser.add_argument("--worker-processes", default=DEFAULTS["WORKER_PROCESSES"])
    parser.add_argument("--user", default=DEFAULTS["NGINX_USER"], help='"user group" for the nginx workers')
    parser.add_argument("--rate", default=DEFAULTS["RATE_LIMIT"], help="per client, e.g. 50r/s")
    parser.add_argument("--burst", default=DEFAULTS["RATE_BURST"], help="requests above the rate at once")
    parser.add_argument("--conn-limit", default=DEFAULTS["CONN_LIMIT"], help="requests in progress per client")
    parser.add_argument("--runtime-dir", help="put pid, logs and temp files in this directory (created)")
    parser.add_argument("-o", "--output", help="write here instead of stdout")
    args = parser.parse_args(argv)

    values = dict(DEFAULTS)
    values.update(
        LISTEN=args.listen,
        WORKER_PROCESSES=args.worker_processes,
        NGINX_USER=args.user,
        RATE_LIMIT=args.rate,
        RATE_BURST=args.burst,
        CONN_LIMIT=args.conn_limit,
        UPSTREAM_SERVERS=upstream_lines(a.strip() for a in args.upstream.split(",") if a.strip()),
    )
    if args.runtime_dir:
        (Path(args.runtime_dir) / "temp").mkdir(parents=True, exist_ok=True)
        values.update(runtime_paths(args.runtime_dir))
    text = render(values)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
