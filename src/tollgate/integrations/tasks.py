"""Background entry points for integrations (thin: the logic is in the services)."""

from __future__ import annotations

import datetime as dt

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from tollgate.integrations import keys, links, webhook_delivery


@db_task()
def api_key_touch_task(key_pk: int, at: str) -> None:
    """Record when an API key was last used (see ``keys._touch``)."""
    keys.api_key_touch(key_pk=key_pk, at=dt.datetime.fromisoformat(at))


@db_task()
def webhook_deliveries_send_task(delivery_ids: list[int]) -> None:
    """Send new or resent webhook deliveries now (scheduled after the commit that made them)."""
    webhook_delivery.webhook_deliveries_send(delivery_ids=delivery_ids)


@db_periodic_task(crontab(minute="*"))
def webhook_deliveries_due_task() -> None:
    """Every minute: webhook deliveries whose next attempt is due (retries on their back-off
    schedule, and any send lost with a worker)."""
    webhook_delivery.webhook_deliveries_send_due()


@db_periodic_task(crontab(minute="41", hour="3"))
def signed_link_uses_purge_task() -> None:
    """Daily: forget used checkout and portal links once every link of their day has expired."""
    links.signed_link_uses_purge()
