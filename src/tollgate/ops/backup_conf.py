"""Backup options, gathered in one typed object and read from Django settings at call time.

Imported by the settings module (to check the encryption key), so it imports nothing of Django's
apps at module level.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path

KEY_BYTES = 32  # AES-256


def backup_key_decode(value: str) -> bytes:
    """The AES-256 key written as base64 (standard or URL-safe alphabet) of 32 random bytes, as
    ``python -m tollgate backup --generate-key`` or ``openssl rand -base64 32`` print it."""
    text = value.strip().replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64") from exc
    if len(key) != KEY_BYTES:
        raise ValueError(f"{len(key)} bytes instead of {KEY_BYTES}")
    return key


def backup_key_problem(value: str) -> str | None:
    """Why ``value`` cannot be the backup key, or None. Never repeats the value."""
    if not value:
        return None
    try:
        backup_key_decode(value)
    except ValueError as exc:
        return (
            f"TOLLGATE_BACKUP_KEY must be 32 random bytes written as base64 ({exc}); "
            "`python -m tollgate backup --generate-key` prints one."
        )
    return None


@dataclass(frozen=True, slots=True)
class BackupSettings:
    directory: Path
    # None: backups are written unencrypted (the directory's permissions protect them).
    key: bytes | None
    keep_daily: int
    keep_weekly: int
    # The worker backs up and runs the restore drill once a day at ``hour`` (UTC) when enabled.
    scheduled: bool
    hour: int
    # PostgreSQL: the scratch database the drill creates and drops (same server and user).
    drill_database: str


def backup_settings() -> BackupSettings:
    from django.conf import settings

    key = settings.BACKUP_KEY
    return BackupSettings(
        directory=Path(settings.BACKUP_DIR),
        key=backup_key_decode(key) if key else None,
        keep_daily=settings.BACKUP_KEEP_DAILY,
        keep_weekly=settings.BACKUP_KEEP_WEEKLY,
        scheduled=settings.BACKUP_SCHEDULE,
        hour=settings.BACKUP_HOUR,
        drill_database=settings.BACKUP_DRILL_DATABASE
        or f"{settings.DATABASES['default']['NAME']}_restore_drill",
    )
