"""Hooks that feed the metrics from the work itself: slow SQL statements, the connection pool's
statistics and background task runs.

Each hook costs little on the hot path: the slow-query wrapper is one clock read per statement, and
the pool's statistics are read at most once a second per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from tollgate.ops import metrics

log = structlog.get_logger(__name__)

POOL_SAMPLE_INTERVAL_SECONDS = 1.0
_last_pool_sample = 0.0
_pool_sample_lock = threading.Lock()


def slow_query_wrapper(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """Count statements slower than ``TOLLGATE_SLOW_QUERY_MS`` (never their text: it may hold data)."""
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        if (time.perf_counter() - started) * 1000 >= settings.SLOW_QUERY_MS:
            metrics.SLOW_QUERIES.labels(alias=context["connection"].alias).inc()


def install_slow_query_wrapper(sender: object, connection: BaseDatabaseWrapper, **_: Any) -> None:
    """``connection_created`` receiver: watch every connection, in web processes and workers.

    The wrapper goes first in the list: ``connection.execute_wrapper()`` blocks pop the last one
    when they end, and a connection opened inside such a block must not make them pop ours.
    """
    if slow_query_wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, slow_query_wrapper)


def pool_stats_sample(*, force: bool = False) -> None:
    """Copy the connection pools' statistics into the metrics, at most once a second."""
    global _last_pool_sample
    now = time.monotonic()
    if not force and now - _last_pool_sample < POOL_SAMPLE_INTERVAL_SECONDS:
        return
    with _pool_sample_lock:
        if not force and now - _last_pool_sample < POOL_SAMPLE_INTERVAL_SECONDS:
            return
        _last_pool_sample = now
    for alias in connections:
        if connections.settings[alias].get("OPTIONS", {}).get("pool"):
            try:
                _pool_stats_record(alias, connections[alias])
            except Exception as exc:  # statistics never fail the request that sampled them
                log.warning("metrics.pool_stats_failed", alias=alias, error=type(exc).__name__)


def _pool_stats_record(alias: str, connection: BaseDatabaseWrapper) -> None:
    pool = getattr(connection, "pool", None)
    if pool is None:
        return
    # pop_stats: the counters since the last read, added to ours; sizes are current values.
    stats: dict[str, int] = pool.pop_stats()
    metrics.POOL_SIZE.labels(alias=alias).set(stats.get("pool_size", 0))
    metrics.POOL_MAX.labels(alias=alias).set(stats.get("pool_max", 0))
    metrics.POOL_AVAILABLE.labels(alias=alias).set(stats.get("pool_available", 0))
    metrics.POOL_WAITING.labels(alias=alias).set(stats.get("requests_waiting", 0))
    metrics.POOL_REQUESTS.labels(alias=alias).inc(stats.get("requests_num", 0))
    metrics.POOL_WAIT.labels(alias=alias).inc(stats.get("requests_wait_ms", 0) / 1000)
    metrics.POOL_ERRORS.labels(alias=alias).inc(stats.get("requests_errors", 0))


BILLING_CLOCK_TASK = "billing_clock_task"


def task_completed(signal: str, task: Any, *args: Any, **kwargs: Any) -> None:
    """Huey ``SIGNAL_COMPLETE`` receiver: count the run; the billing clock's runs are also its
    heartbeat, kept in the shared cache for every web process to report."""
    name = str(task.name)
    metrics.TASK_RUNS.labels(task=name).inc()
    if name == BILLING_CLOCK_TASK:
        from django.core.cache import cache

        cache.set(metrics.BILLING_CLOCK_CACHE_KEY, time.time(), timeout=None)


def task_failed(signal: str, task: Any, *args: Any, **kwargs: Any) -> None:
    """Huey ``SIGNAL_ERROR`` receiver: count the failed run (Huey logs the traceback)."""
    metrics.TASK_FAILURES.labels(task=str(task.name)).inc()


def install() -> None:
    """Connect the hooks; called once from the app's ``ready()``."""
    from django.db.backends.signals import connection_created
    from huey.contrib.djhuey import HUEY
    from huey.signals import SIGNAL_COMPLETE, SIGNAL_ERROR

    connection_created.connect(install_slow_query_wrapper, dispatch_uid="tollgate.ops.slow_query")
    HUEY.signal(SIGNAL_COMPLETE)(task_completed)
    HUEY.signal(SIGNAL_ERROR)(task_failed)
