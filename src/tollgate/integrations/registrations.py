"""What this app registers with the kernel when Django starts (outbox handlers, tasks)."""

from __future__ import annotations


def register_all() -> None:
    from tollgate.integrations import tasks  # noqa: F401  (registers the background tasks)
