"""Background entry points for billing (thin: the logic is in tollgate.billing.billing_clock)."""

from __future__ import annotations

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from tollgate.billing.billing_clock import billing_run


@db_periodic_task(crontab(minute="*"))
def billing_clock_task() -> None:
    """Every minute: renewals, trial ends, expiries, due charges and retries, reconciliation."""
    billing_run()
