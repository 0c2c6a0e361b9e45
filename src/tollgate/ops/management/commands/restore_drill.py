"""``python -m tollgate restore_drill [PATH]``: restore the latest backup into a scratch database,
check it and throw it away; exits non-zero when any check fails. ``--from-s3 [NAME]`` drills a
backup fetched from the bucket (the newest by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tollgate.ops.backup_offsite import offsite_fetch
from tollgate.ops.backup_restore import restore_drill
from tollgate.ops.backup_status import restore_drill_recorded
from tollgate.ops.backups import BackupError, backup_file_for


class Command(BaseCommand):
    help = (
        "Restore the latest backup (or PATH) into a scratch database (PostgreSQL: "
        "TOLLGATE_BACKUP_DRILL_DATABASE, created and dropped; SQLite: a temporary file) and check "
        "it: checksums, row counts and money totals against the manifest, migrations, the ledger "
        "check. The outcome is recorded (audit event, metrics)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", nargs="?", help="A backup file; default: the latest one.")
        parser.add_argument(
            "--from-s3",
            nargs="?",
            const="latest",
            metavar="NAME",
            help="Drill the backup NAME (default: the newest) fetched from TOLLGATE_BACKUP_S3_URL "
            "into the backup directory and checked against its checksum file.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["path"] and options["from_s3"]:
            raise CommandError("Name a backup file, or --from-s3 [NAME]; not both.")
        try:
            backup = backup_file_for(Path(options["path"])) if options["path"] else None
            if options["from_s3"]:
                name = None if options["from_s3"] == "latest" else options["from_s3"]
                backup = offsite_fetch(name=name)
        except BackupError as exc:
            raise CommandError(exc.message) from exc
        result = restore_drill(backup=backup)
        restore_drill_recorded(result)
        name = result.backup.path.name if result.backup else "(none)"
        for check in result.checks:
            line = f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}"
            (self.stdout if check.ok else self.stderr).write(line)
        if not result.ok:
            raise CommandError(f"Restore drill of {name} failed ({result.seconds:.1f} s).")
        self.stdout.write(
            self.style.SUCCESS(f"Restore drill of {name} passed ({result.seconds:.1f} s).")
        )
