"""``manage.py reconcile [--since YYYY-MM-DD]``: compare payments, refunds and the ledger with the
gateway's transactions, heal what Tollgate missed and report mismatches (stored as a run)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from tollgate.billing.conf import billing_settings
from tollgate.billing.models import ReconciliationRun
from tollgate.billing.reconciliation import reconciliation_run
from tollgate.core import clock


def _day_start(value: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"--since {value!r} is not a date like 2025-06-01.") from exc
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


class Command(BaseCommand):
    help = (
        "Compare payments, refunds and their ledger postings with the gateway's transactions since "
        "a day (UTC) up to now: outcomes Tollgate missed are recorded, mismatches are reported and "
        "never overwritten. The report is stored as a reconciliation run (see the admin). Exits "
        "non-zero when there are mismatches or the run failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since",
            help="First day to compare (YYYY-MM-DD, UTC). Default: the last "
            "TOLLGATE_RECONCILIATION_DAYS days, like the daily run.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = clock.now()
        since = (
            _day_start(options["since"])
            if options["since"]
            else now - billing_settings().reconciliation_window
        )
        if since >= now:
            raise CommandError("--since must be a day in the past.")
        with tqdm(desc="reconciling", unit=" transactions", file=self.stderr, disable=None) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            run = reconciliation_run(since=since, until=now, on_progress=progress)
        self.stdout.write(
            f"run={run.public_id} status={run.status} gateway={run.gateway} "
            f"window={run.window_start.isoformat()}..{run.window_end.isoformat()} "
            f"checked={run.checked_count} healed={run.healed_count} "
            f"mismatched={run.mismatched_count} unresolved={run.unresolved_count}"
        )
        for heal in run.heals:
            self.stdout.write(
                f"healed {heal['object']} {heal['id']}: {heal['from']} -> {heal['to']}"
            )
        for item in run.unresolved:
            self.stdout.write(f"unresolved {item['object']} {item['id']}: {item['reason']}")
        for mismatch in run.mismatches:
            self.stderr.write(
                f"mismatch {mismatch['kind']} {mismatch['object']} "
                f"{mismatch['id'] or mismatch['idempotency_key']}: tollgate={mismatch['tollgate']} "
                f"gateway={mismatch['gateway']} {mismatch['detail']}".rstrip()
            )
        if run.status == ReconciliationRun.Status.FAILED:
            raise CommandError(f"Reconciliation run {run.public_id} failed: {run.error}")
        if run.mismatched_count:
            raise CommandError(
                f"{run.mismatched_count} mismatches need attention; see reconciliation run "
                f"{run.public_id}."
            )
