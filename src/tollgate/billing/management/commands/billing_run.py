"""``manage.py billing_run [--until DATETIME]``: run the billing clock by hand (catch up after downtime)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from tollgate.billing.clock import billing_run
from tollgate.billing.notices import notices_send
from tollgate.core import clock


def _aware(value: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"--until {value!r} is not an ISO 8601 date and time.") from exc
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


class Command(BaseCommand):
    help = (
        "Do the billing work due now (or by --until): renewals, trial ends, expiries, due charges "
        "and retries, reconciliation, then the billing notices due (each sent once). Safe to run "
        "while workers run the same clock."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--until", help="Do the work due by this time (ISO 8601; UTC unless it says otherwise)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        until = _aware(options["until"]) if options["until"] else None
        with tqdm(desc="billing", unit=" customers", file=self.stderr, disable=None) as bar:
            result = billing_run(until=until, on_progress=bar.update)
        notices = notices_send(now=until or clock.now())
        self.stdout.write(
            f"renewed={result.renewed} ended={result.ended} expired={result.expired} "
            f"charged={result.charged} reconciled={result.reconciled} failed={result.failed} "
            f"actions_expired={result.actions_expired}"
        )
        self.stdout.write(f"notices: {notices}")
        if result.failed or notices.failed:
            raise CommandError(
                f"{result.failed + notices.failed} items failed; see the log. They are retried "
                "next run."
            )
