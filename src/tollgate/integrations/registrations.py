"""What this app registers with the kernel when Django starts (outbox handlers, tasks)."""

from __future__ import annotations


def register_all() -> None:
    from tollgate.core import outbox
    from tollgate.integrations import keys, tasks  # noqa: F401  (tasks: registers them)

    outbox.register(keys.OUTBOX_KIND, keys.api_key_cached_forget)
