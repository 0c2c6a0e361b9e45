"""Real concurrency for tests: threads released at the same instant against the test database."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any

from django.db import connections


def race(task: Callable[[int], Any], workers: int, *, timeout: float = 120) -> list[Any]:
    """Run ``task(i)`` in ``workers`` threads released at once; each thread's result or exception.

    Fails if a thread has not finished after ``timeout`` seconds (a deadlock, not a slow test).
    """
    barrier = threading.Barrier(workers)
    outcomes: list[Any] = [None] * workers

    def run(index: int, context: contextvars.Context) -> None:
        try:
            barrier.wait()
            outcomes[index] = context.run(task, index)
        except Exception as exc:
            outcomes[index] = exc
        finally:
            connections.close_all()

    # Each thread runs in a copy of the caller's context: a clock frozen by the caller is frozen
    # in the threads too.
    threads = [
        threading.Thread(target=run, args=(index, contextvars.copy_context()))
        for index in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a racing thread never finished"
    return outcomes
