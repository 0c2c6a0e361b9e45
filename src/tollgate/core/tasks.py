"""Background entry points for the outbox (thin: the logic is in tollgate.core.outbox)."""

from __future__ import annotations

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from tollgate.core import outbox


@db_task()
def outbox_deliver_task(message_id: int) -> None:
    outbox.outbox_deliver(message_id=message_id)


@db_periodic_task(crontab(minute="*"))
def outbox_sweep_task() -> None:
    outbox.outbox_sweep()
