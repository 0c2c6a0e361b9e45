"""``manage.py audit_verify``: prove the audit trail's hash chains (docs/security.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from tollgate.audit.verification import HeadMark, audit_chain_verify, audit_marks_check


class Command(BaseCommand):
    help = (
        "Recompute every audit stream's hash chain and compare it with the stored hashes and the "
        "stream heads. Names each changed event (by public id), each run of removed events and "
        "each stream whose end was cut. Exits non-zero when anything does not match. Prints "
        "each stream's head (``head stream=.. seq=.. hash=..``): keep that output somewhere the "
        "database's owner cannot write, and pass it back with --marks to prove that the chains "
        "were not rewritten since."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--marks", metavar="FILE", help="The output of an earlier run, to check against."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        marks: list[HeadMark] = []
        if options["marks"]:
            try:
                lines = Path(options["marks"]).read_text().splitlines()
            except OSError as exc:
                raise CommandError(f"Cannot read {options['marks']}: {exc}") from exc
            marks = [mark for mark in map(HeadMark.parse, lines) if mark is not None]
        with tqdm(desc="verifying", unit=" events", file=self.stderr, disable=None) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            report = audit_chain_verify(on_progress=progress)
        report.findings.extend(audit_marks_check(marks=marks))
        for head in report.heads:
            self.stdout.write(head.line())
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
