"""Background entry points for billing (thin: the logic is in clock/, inbound/ and
reconciliation)."""

from __future__ import annotations

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from tollgate.billing.clock import billing_run
from tollgate.billing.inbound import inbox
from tollgate.billing.notices import notices_send
from tollgate.billing.reconciliation import reconciliation_daily, reconciliation_due
from tollgate.core import clock


@db_periodic_task(crontab(minute="*"))
def billing_clock_task() -> None:
    """Every minute: renewals, trial ends, expiries, due charges and retries, reconciliation."""
    billing_run()


@db_periodic_task(crontab(minute="7"))
def billing_notices_task() -> None:
    """Hourly: the notices that are due (trial ending, annual renewal, card expiring, win-back),
    each sent once (see billing.notices)."""
    notices_send(now=clock.now())


@db_task()
def inbound_events_process_task(gateway: str, event_ids: list[str]) -> None:
    """Process inbound gateway events, scheduled when they were stored (or retried by staff)."""
    inbox.events_process(gateway=gateway, event_ids=event_ids)


@db_periodic_task(crontab(minute="*"))
def inbound_events_sweep_task() -> None:
    """Every minute: inbound events left unprocessed (a lost schedule, a dead worker) and retries."""
    inbox.events_sweep()


@db_periodic_task(reconciliation_due)
def reconciliation_daily_task() -> None:
    """Daily at TOLLGATE_RECONCILIATION_HOUR (UTC): payments, refunds and the ledger compared with
    the gateway's transactions of the last TOLLGATE_RECONCILIATION_DAYS days; heals and a report."""
    reconciliation_daily()
