"""``python -m tollgate restore PATH --yes [--force]``: recover the configured database and the data
directory's secret key from a backup; ``restore --from-s3 [NAME] --yes`` fetches it from the bucket
first (the newest by default) into the backup directory, checked against its checksum file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tollgate.ops.backup_offsite import offsite_fetch
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
        parser.add_argument(
            "path", nargs="?", help="The backup file (tollgate-<time>.tar or .tar.enc)."
        )
        parser.add_argument(
            "--from-s3",
            nargs="?",
            const="latest",
            metavar="NAME",
            help="Fetch the backup NAME (default: the newest) from TOLLGATE_BACKUP_S3_URL into "
            "the backup directory, check it against its checksum file, then restore it.",
        )
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
        if bool(options["path"]) == bool(options["from_s3"]):
            raise CommandError("Name a backup file, or --from-s3 [NAME]; one of the two.")
        try:
            if options["from_s3"]:
                name = None if options["from_s3"] == "latest" else options["from_s3"]
                backup = offsite_fetch(name=name)
                self.stdout.write(f"Fetched {backup.path.name} into {backup.path.parent}.")
            else:
                backup = backup_file_for(Path(options["path"]))
                if not backup.path.is_file():
                    raise BackupError(f"{backup.path} does not exist.")
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
