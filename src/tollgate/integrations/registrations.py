"""What this app registers with the kernel when Django starts (outbox handlers, tasks)."""

from __future__ import annotations


def register_all() -> None:
    from tollgate.core import outbox
    from tollgate.integrations import keys, tasks  # noqa: F401  (tasks: registers them)

    outbox.register(keys.OUTBOX_KIND, keys.api_key_cached_forget)

    from tollgate.integrations import customers, usage

    outbox.register(customers.OUTBOX_KIND, customers.customer_ref_forget)
    outbox.register(usage.OUTBOX_KIND, usage.usage_cached_forget)

    from tollgate.core import events
    from tollgate.integrations import webhook_delivery

    outbox.register(events.OUTBOX_KIND, webhook_delivery.webhook_event_record)
