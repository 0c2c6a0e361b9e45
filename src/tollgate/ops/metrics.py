"""Prometheus metrics. Multi-process servers set PROMETHEUS_MULTIPROC_DIR (see docs/operations.md).

Label values come from closed sets only (the route's view name, a known HTTP method, the status code),
so a client cannot grow the number of series by sending odd paths or methods.
"""

from __future__ import annotations

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "tollgate_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
LATENCY = Histogram(
    "tollgate_http_request_duration_seconds",
    "Time spent serving HTTP requests",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RATE_LIMITED = Counter(
    "tollgate_rate_limited_total", "Requests refused by a rate limit", ["policy"]
)

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """The method as a label value: a standard method, or ``OTHER``."""
    upper = method.upper()
    return upper if upper in _KNOWN_METHODS else "OTHER"


def observe_request(*, method: str, route: str, status: int, seconds: float) -> None:
    """Count one served request under its route (the view name, ``unmatched`` when none)."""
    REQUESTS.labels(method=method_label(method), route=route, status=str(status)).inc()
    LATENCY.labels(route=route).observe(seconds)


def render() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, with their content type."""
    if settings.METRICS_MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
