"""Prometheus metrics at /metrics, summed across gunicorn workers (prometheus-client multiprocess mode).

Under gunicorn, deploy/gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before any worker starts, so
every worker writes its samples there and /metrics reads them all. Labels come from route
templates, methods, statuses, levels and the knowledge version: never from a request's values.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import flask
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNCOUNTED = frozenset({"/metrics", "/livez", "/readyz"})  # scrapes and probes would drown the traffic

REQUESTS = Counter(
    "triage_http_requests", "HTTP requests by route template, method and status.", ["route", "method", "status"]
)
LATENCY = Histogram(
    "triage_http_request_duration_seconds",
    "Time from the request reaching the app to the response leaving it.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
DECISIONS = Counter(
    "triage_decisions", "Triage decisions by level, channel and knowledge version.", ["level", "channel", "knowledge"]
)


def record_decision(level: str, channel: str, knowledge_version: str) -> None:
    _child(DECISIONS, level, channel, knowledge_version).inc()


# labels() validates its arguments on every call: look each child up once, and keep them all (label
# sets are few: levels x channels x versions, route templates x methods x statuses). A child made
# before a fork notices the new pid itself (prometheus-client multiprocess mode).
@functools.cache
def _child(metric: Any, *labels: str) -> Any:
    return metric.labels(*labels)


def init_metrics(app: flask.Flask) -> None:
    app.add_url_rule("/metrics", "metrics", _metrics, methods=["GET"])


def record_request(route: str | None, method: str, status: int, seconds: float) -> None:
    """A request's count and latency (service/cycle.py calls it as each request ends)."""
    route = route or "(unmatched)"
    if route in UNCOUNTED:
        return
    method = method if method in METHODS else "OTHER"
    _child(REQUESTS, route, method, str(status)).inc()
    _child(LATENCY, route, method).observe(seconds)


def _metrics() -> flask.Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return flask.Response(body, content_type=CONTENT_TYPE_LATEST)
