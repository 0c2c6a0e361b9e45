"""``python -m tollgate restore PATH --yes [--force]``: recover the configured database and the data
directory's secret key from a backup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tollgate.ops.backup_restore import backup_restore
from tollgate.ops.backup_status import database_restore_recorded
from tollgate.ops.backups import BackupError, backup_file_for


class Command(BaseCommand):
    help = (
        "Restore a backup into the configured database (DATABASE_URL) and its secret key into the "
        "data directory, after checking its checksums. Stop the web processes and the worker "
        "first. Refuses a database that has tables unless --force."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="The backup file (tollgate-<time>.tar or .tar.enc).")
        parser.add_argument(
            "--yes", action="store_true", help="Confirm: write into the configured database."
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Replace the content of a database that already has tables.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["yes"]:
            raise CommandError(
                "This writes into the configured database; run it again with --yes to confirm."
            )
        path = Path(options["path"])
        try:
            backup = backup_file_for(path)
            if not path.is_file():
                raise BackupError(f"{path} does not exist.")
            result = backup_restore(backup=backup, force=options["force"])
        except BackupError as exc:
            raise CommandError(exc.message) from exc
        database_restore_recorded(result)
        for difference in result.differences:
            self.stderr.write(f"difference {difference}")
        if result.secret_key_restored:
            self.stdout.write("The data directory's secret key was restored.")
        if result.differences:
            raise CommandError(
                f"Restored {backup.path.name}, but the data differs from its manifest "
                f"({len(result.differences)} differences above)."
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Restored {backup.path.name} in {result.seconds:.1f} s. Run `python -m tollgate "
                "migrate`, then start the web processes and the worker."
            )
        )
