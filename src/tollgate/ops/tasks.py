"""Background entry points of operations (thin: the logic is in ``ops.collect``)."""

from __future__ import annotations

import time

from django.core.cache import cache
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, task

from tollgate.ops import collect, metrics


@db_periodic_task(crontab(minute="*"))
def ops_metrics_collect_task() -> None:
    """Every minute: the worker's heartbeat, the work and business gauges, and a queue probe."""
    collect.metrics_collect()
    ops_queue_probe_task(time.time())


@task()
def ops_queue_probe_task(enqueued_at: float) -> None:
    """Sent to the back of the queue: how long it waited is how far behind the workers are."""
    cache.set(metrics.QUEUE_DELAY_CACHE_KEY, max(time.time() - enqueued_at, 0.0), timeout=None)
