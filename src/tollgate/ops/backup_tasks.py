"""Background entry point for backups (thin: the work is in backups, backup_restore and
backup_status)."""

from __future__ import annotations

import datetime as dt

from huey.contrib.djhuey import db_periodic_task

from tollgate.ops.backup_conf import backup_settings
from tollgate.ops.backup_offsite import offsite_copy
from tollgate.ops.backup_restore import restore_drill
from tollgate.ops.backup_status import (
    backup_failure_recorded,
    backup_recorded,
    offsite_copy_recorded,
    offsite_failure_recorded,
    restore_drill_recorded,
)
from tollgate.ops.backups import BackupError, backup_create


def backup_due(moment: dt.datetime) -> bool:
    """The daily schedule, asked by the worker every minute: at minute 30 of TOLLGATE_BACKUP_HOUR
    (UTC), when TOLLGATE_BACKUP_SCHEDULE is on."""
    options = backup_settings()
    return options.scheduled and moment.minute == 30 and moment.hour == options.hour


@db_periodic_task(backup_due)
def backup_daily_task() -> None:
    """Daily: a backup, the retention, the copy to the bucket when one is configured, then the
    restore drill of that backup. A failed copy is recorded and raised after the drill (the local
    backup stays; the next run copies what the bucket lacks)."""
    options = backup_settings()
    try:
        result = backup_create(options=options)
    except BackupError as exc:
        backup_failure_recorded(exc.message)
        raise
    backup_recorded(result)
    copy_failure = None
    if options.s3 is not None:
        try:
            offsite_copy_recorded(offsite_copy(options=options))
        except BackupError as exc:
            offsite_failure_recorded(exc.message)
            copy_failure = exc
    restore_drill_recorded(restore_drill(backup=result.backup, options=options))
    if copy_failure is not None:
        raise copy_failure
