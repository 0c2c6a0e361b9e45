"""``manage.py ledger_check``: verify the books; exits non-zero when anything does not add up."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tollgate.billing.integrity import ledger_check


class Command(BaseCommand):
    help = (
        "Verify that every ledger transaction sums to zero and every invoice matches its lines, "
        "payments and ledger postings."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = ledger_check()
        for problem in report.problems:
            self.stderr.write(f"{problem.kind} {problem.reference}: {problem.detail}")
        summary = (
            f"{report.transactions_checked} transactions, {report.invoices_checked} invoices, "
            f"{report.payments_checked} payments checked"
        )
        if not report.ok:
            raise CommandError(f"{len(report.problems)} problems found; {summary}.")
        self.stdout.write(self.style.SUCCESS(f"Ledger balanced: {summary}."))
