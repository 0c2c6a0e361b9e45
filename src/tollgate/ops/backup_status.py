"""What happened to backups and restore drills: audit events (the durable record), a cached summary
for the staff console, and the Prometheus gauges declared in ``tollgate.ops.metrics``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, transaction

from tollgate.audit.models import AuditEvent
from tollgate.audit.services import audit_record
from tollgate.ops.backup_offsite import OffsiteResult
from tollgate.ops.backup_restore import DrillResult, RestoreResult
from tollgate.ops.backups import BackupResult
from tollgate.ops.metrics import (
    BACKUP_LAST_SUCCESS,
    BACKUP_OFFSITE_LAST_SUCCESS,
    RESTORE_DRILL_LAST_RESULT,
    RESTORE_DRILL_LAST_SUCCESS,
)

log = structlog.get_logger(__name__)

ACTION_BACKUP_CREATED = "ops.backup_created"
ACTION_BACKUP_FAILED = "ops.backup_failed"
ACTION_DRILL_PASSED = "ops.restore_drill_passed"
ACTION_DRILL_FAILED = "ops.restore_drill_failed"
ACTION_DATABASE_RESTORED = "ops.database_restored"
ACTION_OFFSITE_COPIED = "ops.backup_offsite_copied"
ACTION_OFFSITE_FAILED = "ops.backup_offsite_failed"
_CACHE_KEY = "ops:backup-status:v2"
_CACHE_SECONDS = 300


@dataclass(frozen=True)
class BackupStatus:
    last_backup_at: dt.datetime | None
    last_drill_at: dt.datetime | None
    last_drill_ok: bool | None
    last_drill_success_at: dt.datetime | None
    # The copy to the bucket (TOLLGATE_BACKUP_S3_URL): the last attempt, its outcome, the last success.
    offsite_configured: bool = False
    last_offsite_at: dt.datetime | None = None
    last_offsite_ok: bool | None = None
    last_offsite_success_at: dt.datetime | None = None


def _record(action: str, details: dict[str, object]) -> None:
    with transaction.atomic(durable=True):
        audit_record(action=action, details=details)
    cache.delete(_CACHE_KEY)


def backup_recorded(result: BackupResult) -> None:
    """Record a backup that was written (an audit event; the status and gauges follow)."""
    _record(
        ACTION_BACKUP_CREATED,
        {
            "file": result.backup.path.name,
            "bytes": result.size,
            "seconds": round(result.seconds, 2),
            "encrypted": result.backup.encrypted,
            "engine": result.manifest["engine"],
            "removed": [path.name for path in result.removed],
        },
    )
    BACKUP_LAST_SUCCESS.set(time.time())
    log.info("backup_created", file=result.backup.path.name, bytes=result.size)


def backup_gauges_refresh() -> None:
    """Set the backup gauges from the durable record (the audit log), so every process that serves
    /metrics reports the last backup and drill, whichever process ran them and across restarts.
    Before the first drill its result reads -1 (not a failure). With the database unreachable the
    gauges keep what they had: /metrics must still answer then."""
    try:
        status = backup_status()
    except DatabaseError:
        log.warning("backup_status_unavailable")
        return
    if status.last_backup_at is not None:
        BACKUP_LAST_SUCCESS.set(status.last_backup_at.timestamp())
    if status.last_offsite_success_at is not None:
        BACKUP_OFFSITE_LAST_SUCCESS.set(status.last_offsite_success_at.timestamp())
    if status.last_drill_success_at is not None:
        RESTORE_DRILL_LAST_SUCCESS.set(status.last_drill_success_at.timestamp())
    result = -1 if status.last_drill_ok is None else int(status.last_drill_ok)
    RESTORE_DRILL_LAST_RESULT.set(result)


def backup_failure_recorded(message: str) -> None:
    _record(ACTION_BACKUP_FAILED, {"error": message[:2000]})
    log.error("backup_failed", error=message)


def offsite_copy_recorded(result: OffsiteResult) -> None:
    """Record a copy to the bucket that left every local backup there (names, never credentials)."""
    _record(
        ACTION_OFFSITE_COPIED,
        {
            "bucket": result.target.url,
            "uploaded": result.uploaded,
            "removed": result.removed,
            "present": result.present,
        },
    )
    BACKUP_OFFSITE_LAST_SUCCESS.set(time.time())
    log.info("backup_offsite_copied", uploaded=len(result.uploaded), removed=len(result.removed))


def offsite_failure_recorded(message: str) -> None:
    """Record a copy to the bucket that failed; the next run copies what is missing."""
    _record(ACTION_OFFSITE_FAILED, {"error": message[:2000]})
    log.error("backup_offsite_failed", error=message)


def restore_drill_recorded(result: DrillResult) -> None:
    """Record a restore drill's outcome with every check's result."""
    _record(
        ACTION_DRILL_PASSED if result.ok else ACTION_DRILL_FAILED,
        {
            "file": result.backup.path.name if result.backup else "",
            "seconds": round(result.seconds, 2),
            "checks": [
                {"name": check.name, "ok": check.ok, "detail": check.detail[:1000]}
                for check in result.checks
            ],
        },
    )
    RESTORE_DRILL_LAST_RESULT.set(1 if result.ok else 0)
    if result.ok:
        RESTORE_DRILL_LAST_SUCCESS.set(time.time())
    (log.info if result.ok else log.error)(
        "restore_drill_passed" if result.ok else "restore_drill_failed",
        checks_failed=[check.name for check in result.checks if not check.ok],
    )


def database_restore_recorded(result: RestoreResult) -> None:
    """Record, in the restored database, which backup it came from."""
    _record(
        ACTION_DATABASE_RESTORED,
        {
            "file": result.backup.path.name,
            "seconds": round(result.seconds, 2),
            "differences": result.differences[:20],
        },
    )


def _latest(actions: Iterable[str]) -> AuditEvent | None:
    return (
        AuditEvent.objects.filter(action__in=list(actions))
        .only("action", "created_at")
        .order_by("-created_at", "-id")
        .first()
    )


def backup_status() -> BackupStatus:
    """When the last backup was written, copied to the bucket, and how the last restore drill went
    (cached briefly)."""
    configured = bool(settings.BACKUP_S3_URL)
    status: BackupStatus | None = cache.get(_CACHE_KEY)
    if status is not None:
        return dataclasses.replace(status, offsite_configured=configured)
    backup = _latest([ACTION_BACKUP_CREATED])
    drill = _latest([ACTION_DRILL_PASSED, ACTION_DRILL_FAILED])
    passed = (
        drill
        if drill is None or drill.action == ACTION_DRILL_PASSED
        else _latest([ACTION_DRILL_PASSED])
    )
    offsite = _latest([ACTION_OFFSITE_COPIED, ACTION_OFFSITE_FAILED])
    copied = (
        offsite
        if offsite is None or offsite.action == ACTION_OFFSITE_COPIED
        else _latest([ACTION_OFFSITE_COPIED])
    )
    status = BackupStatus(
        last_backup_at=backup.created_at if backup else None,
        last_drill_at=drill.created_at if drill else None,
        last_drill_ok=(drill.action == ACTION_DRILL_PASSED) if drill else None,
        last_drill_success_at=passed.created_at if passed else None,
        offsite_configured=configured,
        last_offsite_at=offsite.created_at if offsite else None,
        last_offsite_ok=(offsite.action == ACTION_OFFSITE_COPIED) if offsite else None,
        last_offsite_success_at=copied.created_at if copied else None,
    )
    cache.set(_CACHE_KEY, status, _CACHE_SECONDS)
    return status
