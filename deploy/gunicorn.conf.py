"""gunicorn settings for `make run` and production; every number can be set from the environment."""

import gc
import ipaddress
import os
import shutil
import sys
import tempfile

from service.logs.setup import level_number
from service.serving import install as send_head_with_body
from service.serving import install_problem_errors, report_start_up_errors
from service.settings import SettingsError, from_environment, server_from_environment

try:  # every problem named at once, before any worker starts
    SETTINGS = from_environment()  # the app reads the same, typed and checked (service/settings.py)
    SERVER = server_from_environment()
except SettingsError as exc:
    sys.exit(str(exc))

send_head_with_body()  # a killed worker cannot leave a proxy holding a header without its body
install_problem_errors()  # gunicorn's own 400/414/431 pages as problem+json, never quoting the request
report_start_up_errors()  # an invalid knowledge base or altered source texts: the reason, not a traceback

bind = os.environ.get("BIND", f"127.0.0.1:{SERVER['PORT']}")
# gthread keeps connections alive and copes with a few slow clients; run behind a buffering proxy
# in production. Set WEB_CONCURRENCY explicitly in containers (cpu_count sees the whole node).
worker_class = "gthread"
workers = SERVER["WEB_CONCURRENCY"]
threads = SERVER["GUNICORN_THREADS"]
timeout = SERVER["GUNICORN_TIMEOUT"]
graceful_timeout = SERVER["GUNICORN_GRACEFUL_TIMEOUT"]
keepalive = 5
# The app (knowledge base, compiled rule index, schemas) is built once in the master and shared by
# forked workers: a recycled worker is serving in milliseconds instead of rebuilding it, which under
# load took one core for about half a second every max_requests calls.
preload_app = True
# Recycle workers now and then to bound the cost of any slow leak (0 turns it off, as the soak test does).
# Rarely: a recycling worker keeps its kept-alive connections up to 2 s before it exits and the master
# forks its replacement, so one worker fewer serves meanwhile. Every 2,000 calls, that halved
# throughput under load (make bench); the soak test shows no leak to bound more tightly.
max_requests = SERVER["GUNICORN_MAX_REQUESTS"]
max_requests_jitter = max_requests // 10
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
control_socket_disable = True  # nothing to write under $HOME on a read-only root

# The app writes the access log itself: one JSON `request` event per call with the route template,
# never the query string or body. gunicorn's own access log stays off; its error log is JSON too.
accesslog = None
logger_class = "service.serving.NoAccessLogger"  # and not even formatted, for a line nobody would see
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
try:
    level_number(loglevel)
except ValueError as exc:  # else gunicorn stops with "Unable to configure logger"
    sys.exit(str(exc))
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "service.logs.setup.json_formatter"}},  # the app's own line shape
    "filters": {"redact": {"()": "service.logs.setup.GunicornRedactor"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["redact"],
            "stream": "ext://sys.stdout",
        }
    },
    "loggers": {"gunicorn.error": {"handlers": ["console"], "level": loglevel.upper(), "propagate": False}},
}

# Prometheus multiprocess mode: every worker writes its samples to one fresh directory, set before
# any worker imports prometheus_client (Kubernetes mounts an emptyDir here).
_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="legraise-metrics-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )

# The CDS JWT replay store every worker shares (service/auth/replay.py): Redis when configured (needed
# for more than one replica), else one SQLite file in a fresh directory of this server's own.
_own_replay_dir = None
if not SETTINGS.get("REPLAY_STORE"):
    _own_replay_dir = tempfile.mkdtemp(
        prefix="legraise-replay-", dir=os.path.dirname(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    )
    os.environ["TRIAGE_REPLAY_STORE"] = f"sqlite://{_own_replay_dir}/replay.sqlite3"


def _is_local(address: str) -> bool:
    if address.startswith(("unix:", "fd://")):
        return True
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _beyond_loopback_problem() -> str | None:
    """Why the service must not serve other machines as configured, or None."""
    if not (SETTINGS.get("API_KEYS_FILE") or SETTINGS.get("API_JWT_TRUST_FILE")):
        return "it needs credentials (TRIAGE_API_KEYS_FILE and/or TRIAGE_API_JWT_TRUST_FILE)"
    if SETTINGS.get("API_OPEN"):
        return "TRIAGE_API_OPEN opens /v1 to everyone, whatever credentials are configured"
    if SETTINGS.get("CDS_AUTH_DISABLED"):
        return "TRIAGE_CDS_AUTH_DISABLED turns off the CDS Hooks JWT check"
    if SETTINGS.get("CDS_TRUST_FILE") and not SETTINGS.get("PUBLIC_BASE_URL"):
        return (
            "TRIAGE_CDS_TRUST_FILE needs TRIAGE_PUBLIC_BASE_URL "
            "(else token audiences and card links follow the Host header)"
        )
    return None


def on_starting(server):
    # Open modes are for loopback only: refuse to serve other machines with any of them on.
    addresses = server.cfg.bind if isinstance(server.cfg.bind, list) else [server.cfg.bind]
    problem = None if all(_is_local(a) for a in addresses) else _beyond_loopback_problem()
    if problem:
        print(f"refusing to start: binding to a non-loopback address, but {problem}; see docs/deployment.md",
              file=sys.stderr)  # fmt: skip
        on_exit(server)
        sys.exit(2)
    _announce_open_modes()
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(metrics_dir, exist_ok=True)
    for name in os.listdir(metrics_dir):  # samples from an earlier run would be summed in
        if name.endswith(".db"):
            os.remove(os.path.join(metrics_dir, name))


def _announce_open_modes():
    # Loud on the terminal, from the typed settings (a spelling of "true" gunicorn reads is the one shown).
    if SETTINGS.get("CDS_AUTH_DISABLED"):
        banner = [
            "!" * 80,
            "!!  TRIAGE_CDS_AUTH_DISABLED is on: CDS Hooks calls are NOT authenticated. Local",
            "!!  development only; unset it before exposing this port to anyone.",
            "!" * 80,
        ]
        print("\n".join(banner), file=sys.stderr)
    if SETTINGS.get("API_OPEN"):
        print("open mode: /v1, /metrics and the docs answer without credentials, on loopback only "
              "(TRIAGE_API_OPEN)", file=sys.stderr)  # fmt: skip
    if SETTINGS.get("SOURCE_TEXTS_DIR"):
        print("verifying every citation against the source texts (TRIAGE_SOURCE_TEXTS_DIR)", file=sys.stderr)


def pre_fork(server, worker):
    # The preloaded app lives as long as the process: keep the collector from walking it in every
    # worker (shorter pauses) and from touching its pages (they stay shared after fork).
    gc.freeze()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    if _own_replay_dir:
        shutil.rmtree(_own_replay_dir, ignore_errors=True)
