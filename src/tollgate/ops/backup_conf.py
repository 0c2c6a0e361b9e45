"""Backup options, gathered in one typed object and read from Django settings at call time.

Imported by the settings module (to check the encryption key), so it imports nothing of Django's
apps at module level.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

KEY_BYTES = 32  # AES-256
# S3's rules for bucket names (which S3-compatible stores accept too).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
S3_SERVER_SIDE_ENCRYPTIONS = ("AES256", "aws:kms")


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
class S3Target:
    """Where backups are copied: a bucket and a key prefix ("" or ending with "/"), on AWS S3 or on
    another S3-compatible store (``endpoint_url``). Credentials are not here: boto3 reads them from
    its usual places (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role)."""

    bucket: str
    prefix: str
    endpoint_url: str | None = None
    region: str | None = None
    # Asked of the store for every object (S3: "AES256" or "aws:kms"); None: the bucket's default.
    server_side_encryption: str | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, name: str) -> str:
        return self.prefix + name


def s3_target_parse(
    url: str, *, endpoint: str = "", region: str = "", server_side_encryption: str = ""
) -> S3Target:
    """TOLLGATE_BACKUP_S3_URL (``s3://bucket/prefix``) and its companions; ValueError says what is
    wrong, never repeating a value that could hold a secret."""
    parts = urlsplit(url.strip())
    if parts.scheme != "s3":
        raise ValueError("TOLLGATE_BACKUP_S3_URL must look like s3://bucket/prefix.")
    if "@" in parts.netloc:
        raise ValueError(
            "TOLLGATE_BACKUP_S3_URL must not hold credentials; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY instead."
        )
    if not parts.netloc:
        raise ValueError("TOLLGATE_BACKUP_S3_URL names no bucket: s3://bucket/prefix.")
    if not _BUCKET.match(parts.netloc):
        raise ValueError(
            f"TOLLGATE_BACKUP_S3_URL: {parts.netloc!r} is not a bucket name (3 to 63 lowercase "
            "letters, digits, dots and hyphens)."
        )
    if parts.query or parts.fragment:
        raise ValueError("TOLLGATE_BACKUP_S3_URL takes no query or fragment.")
    prefix = parts.path.strip("/")
    if prefix and any(segment in ("", ".", "..") for segment in prefix.split("/")):
        raise ValueError("TOLLGATE_BACKUP_S3_URL has an empty, '.' or '..' path segment.")
    return S3Target(
        bucket=parts.netloc,
        prefix=f"{prefix}/" if prefix else "",
        endpoint_url=_endpoint_parse(endpoint) if endpoint else None,
        region=_region_parse(region) if region else None,
        server_side_encryption=_sse_parse(server_side_encryption) or None,
    )


def _endpoint_parse(endpoint: str) -> str:
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "TOLLGATE_BACKUP_S3_ENDPOINT must be the store's URL, such as https://s3.example.com "
            "or http://127.0.0.1:9000."
        )
    if "@" in parts.netloc:
        raise ValueError("TOLLGATE_BACKUP_S3_ENDPOINT must not hold credentials.")
    return endpoint.strip().rstrip("/")


def _region_parse(region: str) -> str:
    if not _REGION.match(region.strip()):
        raise ValueError(
            f"TOLLGATE_BACKUP_S3_REGION={region!r} is not a region name (such as eu-west-1)."
        )
    return region.strip()


def _sse_parse(value: str) -> str:
    if value and value not in S3_SERVER_SIDE_ENCRYPTIONS:
        raise ValueError(
            "TOLLGATE_BACKUP_S3_SSE must be one of " + ", ".join(S3_SERVER_SIDE_ENCRYPTIONS) + "."
        )
    return value


def backup_s3_problems(
    url: str, *, endpoint: str, region: str, server_side_encryption: str
) -> list[str]:
    """Why the bucket settings cannot be used (empty: fine, or no bucket configured)."""
    if not url:
        if endpoint or region or server_side_encryption:
            return [
                "TOLLGATE_BACKUP_S3_ENDPOINT, _REGION or _SSE is set without TOLLGATE_BACKUP_S3_URL."
            ]
        return []
    try:
        s3_target_parse(
            url, endpoint=endpoint, region=region, server_side_encryption=server_side_encryption
        )
    except ValueError as exc:
        return [str(exc)]
    if importlib.util.find_spec("boto3") is None:
        return [
            "TOLLGATE_BACKUP_S3_URL is set but boto3 is not installed: install the s3 extra "
            "(pip install 'tollgate[s3]')."
        ]
    return []


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
    # None: backups stay in ``directory`` only.
    s3: S3Target | None = None


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
        s3=s3_target_parse(
            settings.BACKUP_S3_URL,
            endpoint=settings.BACKUP_S3_ENDPOINT,
            region=settings.BACKUP_S3_REGION,
            server_side_encryption=settings.BACKUP_S3_SSE,
        )
        if settings.BACKUP_S3_URL
        else None,
    )
