"""gunicorn settings for `make run` and production; every number can be set from the environment."""

import gc
import ipaddress
import os
import shutil
import sys
import tempfile

import structlog

from service.logs import level_number
from service.serving import install as send_head_with_body

send_head_with_body()  # a killed worker cannot leave a proxy holding a header without its body

bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
# gthread keeps connections alive and copes with a few slow clients; run behind a buffering proxy
# in production. Set WEB_CONCURRENCY explicitly in containers (cpu_count sees the whole node).
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "25"))
keepalive = 5
# The app (knowledge base, compiled rule index, schemas) is built once in the master and shared by
# forked workers: a recycled worker is serving in milliseconds instead of rebuilding it, which under
# load took one core for about half a second every max_requests calls.
preload_app = True
# Recycle workers now and then to bound the cost of any slow leak (0 turns it off, as the soak test does).
# Rarely: a recycling worker keeps its kept-alive connections up to 2 s before it exits and the master
# forks its replacement, so one worker fewer serves meanwhile. Every 2,000 calls, that halved
# throughput under load (make bench); the soak test shows no leak to bound more tightly.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "50000"))
max_requests_jitter = max_requests // 10
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
control_socket_disable = True  # nothing to write under $HOME on a read-only root

# The app writes the access log itself: one JSON `request` event per call with the route template,
# never the query string or body. gunicorn's own access log stays off; its error log is JSON too.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
try:
    level_number(loglevel)
except ValueError as exc:  # else gunicorn stops with "Unable to configure logger"
    sys.exit(str(exc))
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": structlog.stdlib.ProcessorFormatter,
            "processors": [
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            "foreign_pre_chain": [
                structlog.stdlib.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        }
    },
    "filters": {"redact": {"()": "service.logs.GunicornRedactor"}},
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


def on_starting(server):
    # Refuse to serve other machines with no credentials configured: open mode is for loopback only.
    addresses = server.cfg.bind if isinstance(server.cfg.bind, list) else [server.cfg.bind]
    has_credentials = os.environ.get("TRIAGE_API_KEYS_FILE") or os.environ.get("TRIAGE_API_JWT_TRUST_FILE")
    if not has_credentials and not all(_is_local(a) for a in addresses):
        print(
            "refusing to start: binding to a non-loopback address needs credentials "
            "(TRIAGE_API_KEYS_FILE and/or TRIAGE_API_JWT_TRUST_FILE); see README, Deployment",
            file=sys.stderr,
        )
        on_exit(server)
        sys.exit(2)
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(metrics_dir, exist_ok=True)
    for name in os.listdir(metrics_dir):  # samples from an earlier run would be summed in
        if name.endswith(".db"):
            os.remove(os.path.join(metrics_dir, name))


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
