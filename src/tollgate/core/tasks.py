"""Background entry points of the core: outbox delivery and the idempotency-record purge (thin)."""

from __future__ import annotations

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from tollgate.core import idempotency, outbox


@db_task()
def outbox_deliver_task(message_id: int) -> None:
    outbox.outbox_deliver(message_id=message_id)


@db_task()
def outbox_deliver_many_task(message_ids: list[int]) -> None:
    """Deliver the messages of one batch of changes (see ``outbox.outbox_batch``)."""
    for message_id in message_ids:
        outbox.outbox_deliver(message_id=message_id)


@db_periodic_task(crontab(minute="*"))
def outbox_sweep_task() -> None:
    outbox.outbox_sweep()


@db_periodic_task(crontab(minute="17"))
def idempotency_purge_task() -> None:
    """Hourly: forget idempotency records past their retention."""
    idempotency.idempotency_purge()
