"""Readiness checks: is the database reachable, does the cache answer, has a worker checked in.

The checks run in parallel, each in its own daemon thread, under one deadline, so /readyz answers
within ``CHECK_TIMEOUT_SECONDS`` even when a dependency hangs (an unreachable Redis without a socket
timeout, a connection pool waiting for a free slot). At most one check per component runs at a time:
while a hung check is still running, the next probe reports that component as failing at once instead
of starting another thread.

The worker check reads the heartbeat the worker writes to the shared cache every minute
(``ops_metrics_collect_task``). It is always reported; it fails readiness only when
``TOLLGATE_WORKER_REQUIRED`` is on (the production default), because a load balancer that routes
by /readyz takes every web process out of service while no worker runs.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog
from django.conf import settings
from django.core.cache import BaseCache, caches
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

log = structlog.get_logger(__name__)

CHECK_TIMEOUT_SECONDS = 3.0
_CACHE_PROBE_KEY = "tollgate:readyz"
_PROCESS_STARTED = time.time()


class WorkerNotSeen(RuntimeError):
    """No worker has checked in since this process started (beyond the allowed age)."""


class WorkerStale(RuntimeError):
    """The last worker check-in is older than ``TOLLGATE_WORKER_HEARTBEAT_MAX_AGE_SECONDS``."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str = ""

    @property
    def state(self) -> str:
        return "ok" if self.ok else f"failing: {self.detail}"


def database_check(connection: BaseDatabaseWrapper) -> None:
    """Run ``SELECT 1`` on ``connection``; raises the driver's error when the database is unreachable."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        if cursor.fetchone() is None:
            raise RuntimeError("the database returned no row for SELECT 1")


def cache_check(cache: BaseCache) -> None:
    """Write a value and read it back; raises when the cache is unreachable or loses the value."""
    token = str(time.monotonic_ns())
    cache.set(_CACHE_PROBE_KEY, token, timeout=10)
    if cache.get(_CACHE_PROBE_KEY) != token:
        raise RuntimeError("the cache did not return the value just written")


def worker_check(
    *, last_seen: float | None, max_age: float, now: float, started: float | None = None
) -> None:
    """Raise when the worker's last check-in (Unix time) is older than ``max_age`` seconds.

    A process younger than ``max_age`` passes without a check-in: a fresh deployment (or an
    emptied cache) gives the worker its first minute to check in.
    """
    if last_seen is None:
        if now - (_PROCESS_STARTED if started is None else started) >= max_age:
            raise WorkerNotSeen("no worker has checked in")
        return
    if now - last_seen > max_age:
        raise WorkerStale(f"last check-in {now - last_seen:.0f} s ago")


def worker_heartbeat_check() -> None:
    from tollgate.ops.collect import worker_last_seen

    worker_check(
        last_seen=worker_last_seen(),
        max_age=settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS,
        now=time.time(),
    )


def database_alias_check(alias: str = "default") -> None:
    """Check the ``alias`` database on this thread's own connection, then close it (or give it back
    to the pool): Django connections belong to the thread that opened them."""
    connection = connections[alias]
    try:
        database_check(connection)
    finally:
        connection.close()


def readiness_checks() -> dict[str, Callable[[], None]]:
    """The checks /readyz runs: the default database, the default cache and the worker.

    Call it on the request's thread: the cache client (thread-safe, with its connection pool) is
    taken from there, while the database check opens its own connection on the checking thread.
    """
    return {
        "database": database_alias_check,
        "cache": functools.partial(cache_check, caches["default"]),
        "worker": worker_heartbeat_check,
    }


def readiness_failing(results: list[CheckResult], *, worker_required: bool) -> list[str]:
    """The components that make the process unready (the worker only when it is required)."""
    return [
        result.name
        for result in results
        if not result.ok and (result.name != "worker" or worker_required)
    ]


@dataclass
class _Probe:
    name: str
    check: Callable[[], None]
    done: bool = False
    error: BaseException | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def run(self) -> None:
        try:
            self.check()
        except Exception as exc:
            self.error = exc
        finally:
            self.done = True


_running: dict[str, threading.Thread] = {}
_running_lock = threading.Lock()


def readiness(
    checks: Mapping[str, Callable[[], None]], *, timeout: float = CHECK_TIMEOUT_SECONDS
) -> list[CheckResult]:
    """Run ``checks`` in parallel under one deadline; a raised error or a missed deadline fails."""
    probes = [_Probe(name, check) for name, check in checks.items()]
    busy: set[str] = set()
    with _running_lock:
        for probe in probes:
            previous = _running.get(probe.name)
            if previous is not None and previous.is_alive():
                busy.add(probe.name)
                continue
            probe.thread = threading.Thread(
                target=probe.run, name=f"readyz-{probe.name}", daemon=True
            )
            _running[probe.name] = probe.thread
            probe.thread.start()
    deadline = time.monotonic() + timeout
    for probe in probes:
        if probe.thread is not None:
            probe.thread.join(max(deadline - time.monotonic(), 0))
    return [_result(probe, busy=probe.name in busy, timeout=timeout) for probe in probes]


def _result(probe: _Probe, *, busy: bool, timeout: float) -> CheckResult:
    if busy:
        log.warning("readyz.check_still_running", component=probe.name)
        return CheckResult(probe.name, ok=False, detail="timeout (previous check still running)")
    if not probe.done:
        log.warning("readyz.check_timeout", component=probe.name, timeout_s=timeout)
        return CheckResult(probe.name, ok=False, detail="timeout")
    if probe.error is not None:
        # The message may name hosts or users; the log processor scrubs credentials from it.
        log.warning(
            "readyz.check_failed",
            component=probe.name,
            error=type(probe.error).__name__,
            detail=str(probe.error)[:500],
        )
        return CheckResult(probe.name, ok=False, detail=type(probe.error).__name__)
    return CheckResult(probe.name, ok=True)
