"""``python -m tollgate backup``: a consistent, compressed (and, with a key, encrypted) backup of the
database and the data directory's secret key into TOLLGATE_BACKUP_DIR, then the retention."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from tollgate.ops.backup_conf import KEY_BYTES, BackupSettings, backup_settings
from tollgate.ops.backup_offsite import offsite_copy
from tollgate.ops.backup_status import (
    backup_failure_recorded,
    backup_recorded,
    offsite_copy_recorded,
    offsite_failure_recorded,
)
from tollgate.ops.backups import BackupError, backup_create


class Command(BaseCommand):
    help = (
        "Back up the database (pg_dump, or SQLite's online backup) and the data directory's secret "
        "key into one file in TOLLGATE_BACKUP_DIR with a manifest of checksums, row counts and "
        "money totals; encrypted when TOLLGATE_BACKUP_KEY is set; older backups beyond "
        "TOLLGATE_BACKUP_KEEP_DAILY / _WEEKLY are deleted. With TOLLGATE_BACKUP_S3_URL, the "
        "backups the bucket lacks are then copied there and the retention applied to it too."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--generate-key",
            action="store_true",
            help="Print a new random key for TOLLGATE_BACKUP_KEY and exit (nothing is backed up).",
        )
        parser.add_argument(
            "--copy-only",
            action="store_true",
            help="Make no new backup: copy the local backups the bucket lacks (after a failed copy).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["generate_key"]:
            self.stdout.write(base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode())
            return
        settings = backup_settings()
        if options["copy_only"]:
            if settings.s3 is None:
                raise CommandError("No bucket configured: set TOLLGATE_BACKUP_S3_URL.")
            self._copy(settings)
            return
        with tqdm(desc="backing up", unit=" steps", file=self.stderr, disable=None) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                result = backup_create(options=settings, on_progress=progress)
            except BackupError as exc:
                backup_failure_recorded(exc.message)
                raise CommandError(exc.message) from exc
        backup_recorded(result)
        counts = result.manifest["row_counts"]
        self.stdout.write(
            f"backup={result.backup.path} bytes={result.size} "
            f"encrypted={'yes' if result.backup.encrypted else 'no'} "
            f"rows={sum(counts.values())} seconds={result.seconds:.1f} removed={len(result.removed)}"
        )
        if not result.backup.encrypted:
            self.stderr.write(
                "Not encrypted: anyone who can read the file reads the database. Set "
                "TOLLGATE_BACKUP_KEY (`backup --generate-key`) before copying backups off this machine."
            )
        if settings.s3 is not None:
            self._copy(settings)

    def _copy(self, settings: BackupSettings) -> None:
        try:
            copied = offsite_copy(options=settings)
        except BackupError as exc:
            offsite_failure_recorded(exc.message)
            raise CommandError(
                f"{exc.message} The local backups are intact; the next run (or `backup "
                "--copy-only`) copies what the bucket lacks."
            ) from exc
        offsite_copy_recorded(copied)
        self.stdout.write(
            f"bucket={copied.target.url} uploaded={len(copied.uploaded)} "
            f"removed={len(copied.removed)} present={copied.present}"
        )
