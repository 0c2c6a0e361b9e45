"""Prometheus metrics. Multi-process servers set PROMETHEUS_MULTIPROC_DIR (see docs/operations.md).

Label values come from closed sets only (the route's view name, a known HTTP method, the status code,
a task's registered name, a plan's code, a gateway's name), so a client cannot grow the number of
series by sending odd paths or methods.

Three kinds of metric live here:

- per request or per query, updated where the work happens (``tollgate_http_*``, ``tollgate_db_*``,
  ``tollgate_cache_*``);
- per task run, updated by Huey's signals in the worker (``tollgate_task_*``);
- state computed from the database once a minute by the worker's ``ops_metrics_collect_task``
  (``tollgate_outbox_*``, ``tollgate_inbox_*``, ``tollgate_billing_*``, ``tollgate_worker_*``),
  never per scrape: the worker writes them to the shared cache and every web process reads them
  from there when scraped (``WORKER_GAUGES``), so web processes and workers may run on different
  machines.

Counters of background task runs live in the worker's process: they reach /metrics when the worker
and the web processes share one ``PROMETHEUS_MULTIPROC_DIR`` (one machine).

The backup metrics are declared here too, so the dashboard, the alert rules and the backup status
module agree on their names.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import REGISTRY, Collector

# --- HTTP -------------------------------------------------------------------------------------------
REQUESTS = Counter(
    "tollgate_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
LATENCY = Histogram(
    "tollgate_http_request_duration_seconds",
    "Time spent serving HTTP requests",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT = Gauge(
    "tollgate_http_requests_in_flight",
    "HTTP requests being served right now",
    multiprocess_mode="livesum",
)
READINESS = Gauge(
    "tollgate_readiness_check_ok",
    "1 when the component passed the last /readyz check of a process, 0 when it failed",
    ["component"],
    multiprocess_mode="livemostrecent",
)
# tollgate_rate_limited_total is declared by tollgate.security.metrics: the rate limiter sits below
# ops and does not import it.

# --- Database ---------------------------------------------------------------------------------------
SLOW_QUERIES = Counter(
    "tollgate_db_slow_queries_total",
    "SQL statements slower than TOLLGATE_SLOW_QUERY_MS",
    ["alias"],
)
POOL_SIZE = Gauge(
    "tollgate_db_pool_connections",
    "Connections held by the pool (open), per pool settings",
    ["alias"],
    multiprocess_mode="livesum",
)
POOL_MAX = Gauge(
    "tollgate_db_pool_max_connections",
    "Largest number of connections the pool may open",
    ["alias"],
    multiprocess_mode="livesum",
)
POOL_AVAILABLE = Gauge(
    "tollgate_db_pool_available_connections",
    "Open connections idle in the pool",
    ["alias"],
    multiprocess_mode="livesum",
)
POOL_WAITING = Gauge(
    "tollgate_db_pool_waiting_requests",
    "Requests queued waiting for a pooled connection",
    ["alias"],
    multiprocess_mode="livesum",
)
POOL_REQUESTS = Counter(
    "tollgate_db_pool_requests_total", "Connections asked of the pool", ["alias"]
)
POOL_WAIT = Counter(
    "tollgate_db_pool_wait_seconds_total",
    "Time requests spent waiting for a pooled connection",
    ["alias"],
)
POOL_ERRORS = Counter(
    "tollgate_db_pool_errors_total",
    "Requests for a pooled connection that failed (timeouts, a full queue)",
    ["alias"],
)

# --- Cache ------------------------------------------------------------------------------------------
CACHE_HITS = Counter("tollgate_cache_hits_total", "Cache reads that found the key", ["cache"])
CACHE_MISSES = Counter(
    "tollgate_cache_misses_total", "Cache reads that did not find the key", ["cache"]
)
CACHE_ERRORS = Counter(
    "tollgate_cache_errors_total", "Cache operations that raised (Redis down or slow)", ["op"]
)

# --- Background work --------------------------------------------------------------------------------
TASK_RUNS = Counter("tollgate_task_runs_total", "Background task runs that completed", ["task"])
TASK_FAILURES = Counter(
    "tollgate_task_failures_total", "Background task runs that raised", ["task"]
)
QUEUE_DEPTH_NAME = "tollgate_task_queue_depth"

# Written by the worker into the shared cache (``ops.collect``) and read from there when /metrics
# is scraped, so every web process, on any machine, reports them: name -> (help, label names).
WORKER_GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "tollgate_worker_heartbeat_timestamp_seconds": (
        "When a worker last ran the metrics collector (Unix time)",
        (),
    ),
    "tollgate_task_queue_delay_seconds": (
        "How long the last queue probe waited in the task queue before a worker ran it",
        (),
    ),
    "tollgate_billing_clock_last_success_timestamp_seconds": (
        "When the billing clock last completed a run (Unix time)",
        (),
    ),
    "tollgate_outbox_pending_messages": ("Outbox messages waiting for delivery", ()),
    "tollgate_outbox_oldest_pending_age_seconds": (
        "Age of the oldest outbox message waiting for delivery (0 when none)",
        (),
    ),
    "tollgate_outbox_failed_messages": ("Outbox messages that gave up (need a retry)", ()),
    "tollgate_inbox_pending_events": (
        "Inbound gateway events not processed yet (received, or failed with a retry due)",
        (),
    ),
    "tollgate_inbox_oldest_pending_age_seconds": (
        "Age of the oldest inbound event not processed yet (0 when none)",
        (),
    ),
    "tollgate_inbox_lag_seconds": (
        "Longest time from receipt to processing of the events processed in the last 10 minutes",
        (),
    ),
    "tollgate_billing_subscriptions": ("Subscriptions by status and plan", ("status", "plan")),
    "tollgate_billing_subscriptions_overdue": (
        "Subscriptions past their period end for over 10 minutes, not renewed or ended",
        (),
    ),
    "tollgate_billing_mrr_minor_units": (
        "Monthly recurring revenue of active and past-due subscriptions, in minor units",
        ("plan", "currency"),
    ),
    "tollgate_billing_payments_last_hour": (
        "Payment attempts started in the last hour, by gateway and status",
        ("gateway", "status"),
    ),
    "tollgate_billing_refunds_last_hour": ("Refunds asked for in the last hour", ("status",)),
    "tollgate_billing_dunning_invoices": (
        "Open invoices of past-due subscriptions, by failed payment attempts so far",
        ("stage",),
    ),
    "tollgate_billing_reconciliation_mismatches": (
        "Mismatches and unresolved items of the latest completed reconciliation, per gateway",
        ("gateway",),
    ),
    "tollgate_billing_disputes_open": ("Disputes not closed (evidence due or under review)", ()),
}
SNAPSHOT_CACHE_KEY = "ops:metrics_snapshot"
BILLING_CLOCK_CACHE_KEY = "ops:billing_clock_last_success"
QUEUE_DELAY_CACHE_KEY = "ops:queue_delay"

# --- Backups (set by the backup command and the restore drill) -------------------------------------
# Named here so the dashboard, the alert rules and the backup status module agree on the names.
BACKUP_LAST_SUCCESS = Gauge(
    "tollgate_backup_last_success_timestamp_seconds",
    "When the last backup completed (Unix time)",
    multiprocess_mode="max",
)
BACKUP_OFFSITE_LAST_SUCCESS = Gauge(
    "tollgate_backup_offsite_last_success_timestamp_seconds",
    "When the backups were last copied to the bucket in full (Unix time; 0: never, or no bucket)",
    multiprocess_mode="max",
)
RESTORE_DRILL_LAST_SUCCESS = Gauge(
    "tollgate_restore_drill_last_success_timestamp_seconds",
    "When the last restore drill succeeded (Unix time)",
    multiprocess_mode="max",
)
RESTORE_DRILL_LAST_RESULT = Gauge(
    "tollgate_restore_drill_last_result",
    "1 when the last restore drill succeeded, 0 when it failed, -1 before the first",
    multiprocess_mode="mostrecent",
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


class QueueDepthCollector(Collector):
    """Tasks waiting in the queue, read when scraped: one cheap count (``LLEN`` on Redis), so the
    depth is right even while every worker is busy or down."""

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(QUEUE_DEPTH_NAME, "Tasks waiting in the task queue")

    def collect(self) -> Iterator[Metric]:
        from huey.contrib.djhuey import HUEY

        family = GaugeMetricFamily(QUEUE_DEPTH_NAME, "Tasks waiting in the task queue")
        try:
            family.add_metric([], float(HUEY.pending_count()))
        except Exception:  # the queue's store is down: no sample rather than a failed scrape
            CACHE_ERRORS.labels(op="queue_depth").inc()
            return
        yield family


class WorkerGaugesCollector(Collector):
    """The gauges the worker left in the shared cache (one round trip per scrape)."""

    def describe(self) -> Iterator[Metric]:
        for name, (documentation, labels) in WORKER_GAUGES.items():
            yield GaugeMetricFamily(name, documentation, labels=list(labels))

    def collect(self) -> Iterator[Metric]:
        from django.core.cache import cache

        keys = [SNAPSHOT_CACHE_KEY, BILLING_CLOCK_CACHE_KEY, QUEUE_DELAY_CACHE_KEY]
        try:
            found = cache.get_many(keys)
        except Exception:
            CACHE_ERRORS.labels(op="metrics_snapshot").inc()
            return
        samples: dict[str, list[tuple[list[str], float]]] = dict(
            found.get(SNAPSHOT_CACHE_KEY) or {}
        )
        if BILLING_CLOCK_CACHE_KEY in found:
            samples["tollgate_billing_clock_last_success_timestamp_seconds"] = [
                ([], found[BILLING_CLOCK_CACHE_KEY])
            ]
        if QUEUE_DELAY_CACHE_KEY in found:
            samples["tollgate_task_queue_delay_seconds"] = [([], found[QUEUE_DELAY_CACHE_KEY])]
        for name, rows in samples.items():
            if name not in WORKER_GAUGES:
                continue
            documentation, labels = WORKER_GAUGES[name]
            family = GaugeMetricFamily(name, documentation, labels=list(labels))
            for label_values, sample in rows:
                family.add_metric(list(label_values), float(sample))
            yield family


_SCRAPE_TIME_COLLECTORS = (QueueDepthCollector(), WorkerGaugesCollector())
for _collector in _SCRAPE_TIME_COLLECTORS:
    REGISTRY.register(_collector)
_PER_PROCESS = (ProcessCollector, PlatformCollector, GCCollector, MetricWrapperBase)


def registry() -> CollectorRegistry:
    """What /metrics exposes: this process's registry, or in multiprocess mode every process's
    metrics (from their files) plus the collectors that read shared state when scraped."""
    if not settings.METRICS_MULTIPROC_DIR:
        return REGISTRY
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)
    # The registry has no public list of its collectors; these are read when scraped (ours and
    # other modules', such as the backup status), while metric objects come from the files.
    for collector in list(REGISTRY._collector_to_names):
        if not isinstance(collector, _PER_PROCESS):
            merged.register(collector)
    return merged


def render() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, with their content type."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST
