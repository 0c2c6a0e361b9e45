"""``manage.py audit_verify``: prove the audit trail's hash chains (docs/security.md)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from tollgate.audit.verification import audit_chain_verify


class Command(BaseCommand):
    help = (
        "Recompute every audit stream's hash chain and compare it with the stored hashes and the "
        "stream heads. Names each changed event (by public id), each run of removed events and "
        "each stream whose end was cut. Exits non-zero when anything does not match."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        with tqdm(desc="verifying", unit=" events", file=self.stderr, disable=None) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            report = audit_chain_verify(on_progress=progress)
        for finding in report.findings:
            self.stderr.write(f"{finding.kind}: {finding.message}")
        self.stdout.write(
            f"checked={report.checked} streams={report.streams} problems={len(report.findings)}"
        )
        if not report.ok:
            named = sorted({finding.event for finding in report.findings if finding.event})
            raise CommandError(
                f"The audit trail does not verify: {len(report.findings)} problem(s)"
                + (f"; events: {', '.join(named)}" if named else "")
            )
