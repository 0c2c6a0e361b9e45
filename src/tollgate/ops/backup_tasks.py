"""Background entry point for backups (thin: the work is in backups, backup_restore and
backup_status)."""

from __future__ import annotations

import datetime as dt

from huey.contrib.djhuey import db_periodic_task

from tollgate.ops.backup_conf import backup_settings
from tollgate.ops.backup_restore import restore_drill
from tollgate.ops.backup_status import (
    backup_failure_recorded,
    backup_recorded,
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
    """Daily: a backup, the retention, then the restore drill of that backup."""
    try:
        result = backup_create()
    except BackupError as exc:
        backup_failure_recorded(exc.message)
        raise
    backup_recorded(result)
    restore_drill_recorded(restore_drill(backup=result.backup))
