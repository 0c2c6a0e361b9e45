"""Copies of the backups in an S3-compatible bucket (TOLLGATE_BACKUP_S3_URL), through boto3.

Each backup is copied as two objects under the bucket's prefix, with the names it has locally: the
backup file (multipart when large), then its ``.sha256`` checksum file, so a backup whose checksum
file is in the bucket was copied whole. Each object carries its SHA-256 as metadata; after an upload
the object's size and that metadata are read back and compared with the local file. Copying a
backup's file again is never needed: a run copies every local backup the bucket lacks (a failed run
is made good by the next one), then applies the retention to the bucket too. Only objects directly
under the prefix and named like backups are ever read or deleted.

Credentials are boto3's own business (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws, an instance
role): they are never read, logged or stored here. boto3 is an optional dependency (the s3 extra),
imported only when a bucket is configured.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tollgate.core.redaction import scrub_text
from tollgate.ops.backup_conf import BackupSettings, S3Target, backup_settings
from tollgate.ops.backups import (
    BackupError,
    BackupFile,
    backup_file_for,
    backups_list,
    file_sha256,
    retention_keep,
)

CHECKSUM_SUFFIX = ".sha256"
# Files larger than this go up in parts of this size (S3 wants parts of 5 MiB or more).
MULTIPART_BYTES = 16 * 1024 * 1024
_METADATA_SHA256 = "sha256"


@dataclass
class OffsiteResult:
    target: S3Target
    uploaded: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    # Backups the bucket holds after the run.
    present: int = 0


def _client(target: S3Target) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise BackupError(
            "TOLLGATE_BACKUP_S3_URL is set but boto3 is not installed: install the s3 extra "
            "(pip install 'tollgate[s3]')."
        ) from None
    config = Config(
        connect_timeout=10,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        # Stores other than AWS (MinIO, Ceph, a local endpoint) serve buckets under the path.
        s3={"addressing_style": "path"} if target.endpoint_url else None,
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=target.endpoint_url, region_name=target.region, config=config
    )


@contextmanager
def _store_errors(target: S3Target, what: str) -> Iterator[None]:
    """The library's, the network's and the local files' errors as a BackupError naming the bucket
    and the step."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError, Boto3Error, OSError) as exc:
        raise BackupError(f"{what} in {target.url} failed: {scrub_text(str(exc))[:1000]}") from exc


def _is_backup_name(name: str) -> bool:
    try:
        backup_file_for(Path(name))
    except BackupError:
        return False
    return "/" not in name


def offsite_objects(target: S3Target, client: Any) -> dict[str, int]:
    """The backups and checksum files directly under the prefix: name -> size in bytes."""
    found: dict[str, int] = {}
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=target.bucket, Prefix=target.prefix
    )
    for page in pages:
        for item in page.get("Contents", []):
            name = item["Key"][len(target.prefix) :]
            if _is_backup_name(name.removesuffix(CHECKSUM_SUFFIX)):
                found[name] = int(item["Size"])
    return found


def offsite_upload(target: S3Target, client: Any, path: Path, *, sha256: str) -> None:
    """``path`` uploaded under the prefix (in parts when large), then read back: the object's size
    and recorded SHA-256 must be the local file's."""
    from boto3.s3.transfer import TransferConfig

    extra: dict[str, Any] = {"Metadata": {_METADATA_SHA256: sha256}}
    if target.server_side_encryption:
        extra["ServerSideEncryption"] = target.server_side_encryption
    key = target.key(path.name)
    transfer = TransferConfig(
        multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES
    )
    client.upload_file(str(path), target.bucket, key, ExtraArgs=extra, Config=transfer)
    head = client.head_object(Bucket=target.bucket, Key=key)
    size = path.stat().st_size
    if (
        int(head["ContentLength"]) != size
        or head.get("Metadata", {}).get(_METADATA_SHA256) != sha256
    ):
        raise BackupError(
            f"{path.name} in {target.url} is not what was sent ({head['ContentLength']} bytes "
            f"instead of {size}, or another checksum)."
        )


def _checksum_of(backup: BackupFile) -> str:
    """The backup's SHA-256 from its checksum file, after checking the file still matches it."""
    if not backup.checksum_path.is_file():
        raise BackupError(f"{backup.path.name} has no {backup.checksum_path.name}; not copied.")
    expected = backup.checksum_path.read_text(encoding="utf-8").split()[0]
    if file_sha256(backup.path) != expected:
        raise BackupError(
            f"{backup.path.name} does not match {backup.checksum_path.name}; not copied."
        )
    return expected


def _copied(remote: dict[str, int], backup: BackupFile) -> bool:
    name = backup.path.name
    return (
        remote.get(name) == backup.path.stat().st_size
        and remote.get(name + CHECKSUM_SUFFIX) == backup.checksum_path.stat().st_size
    )


def offsite_copy(*, options: BackupSettings | None = None) -> OffsiteResult:
    """Every local backup the bucket lacks (or holds damaged or cut short) checked against its
    checksum file and uploaded, newest first, with its checksum file; then the retention applied
    to the bucket's backups. Stops at the first failure, leaving the local backups untouched and
    the bucket's older backups in place. Raises BackupError."""
    options = options or backup_settings()
    if options.s3 is None:
        raise BackupError("No bucket configured: set TOLLGATE_BACKUP_S3_URL.")
    target = options.s3
    client = _client(target)
    result = OffsiteResult(target=target)
    with _store_errors(target, "Listing the backups"):
        remote = offsite_objects(target, client)
    for backup in backups_list(options.directory):
        if backup.checksum_path.is_file() and _copied(remote, backup):
            continue
        sha256 = _checksum_of(backup)
        with _store_errors(target, f"Copying {backup.path.name}"):
            offsite_upload(target, client, backup.path, sha256=sha256)
            checksum = backup.checksum_path
            offsite_upload(target, client, checksum, sha256=file_sha256(checksum))
        remote[backup.path.name] = backup.path.stat().st_size
        remote[checksum.name] = checksum.stat().st_size
        result.uploaded.append(backup.path.name)
    with _store_errors(target, "Applying the retention"):
        result.removed = _retention_apply(target, client, remote, options)
    result.present = sum(1 for name in remote if not name.endswith(CHECKSUM_SUFFIX)) - len(
        result.removed
    )
    return result


def _retention_apply(
    target: S3Target, client: Any, remote: dict[str, int], options: BackupSettings
) -> list[str]:
    """The bucket's backups that the retention does not keep, deleted with their checksum files.
    The retention is computed over the bucket's and the directory's backups together, so a new
    machine with an empty directory never empties the bucket."""
    names = {name for name in remote if not name.endswith(CHECKSUM_SUFFIX)}
    names |= {backup.path.name for backup in backups_list(options.directory)}
    backups = sorted(
        (backup_file_for(Path(name)) for name in names),
        key=lambda backup: backup.created_at,
        reverse=True,
    )
    keep = retention_keep(backups, keep_daily=options.keep_daily, keep_weekly=options.keep_weekly)
    removed = []
    for backup in backups:
        name = backup.path.name
        if backup.path in keep or name not in remote:
            continue
        for key in (name, name + CHECKSUM_SUFFIX):
            if key in remote:
                client.delete_object(Bucket=target.bucket, Key=target.key(key))
        removed.append(name)
    return removed


# --- Fetching a backup back -------------------------------------------------------------------------


def _download(target: S3Target, client: Any, name: str, destination: Path) -> None:
    """The object ``name`` written to ``destination``, readable only by its owner."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    with os.fdopen(os.open(destination, flags, 0o600), "wb") as out:
        client.download_fileobj(target.bucket, target.key(name), out)


def offsite_fetch(*, name: str | None = None, options: BackupSettings | None = None) -> BackupFile:
    """The backup ``name`` (default: the newest the bucket holds whole) downloaded from the bucket
    into the backup directory with its checksum file, after checking it against that checksum
    file: a backup that does not match is not kept. For recovery on a machine whose backup
    directory is empty or lost. Raises BackupError."""
    options = options or backup_settings()
    if options.s3 is None:
        raise BackupError("No bucket configured: set TOLLGATE_BACKUP_S3_URL.")
    target = options.s3
    client = _client(target)
    with _store_errors(target, "Listing the backups"):
        remote = offsite_objects(target, client)
    whole = sorted(
        (n for n in remote if not n.endswith(CHECKSUM_SUFFIX) and n + CHECKSUM_SUFFIX in remote),
        key=lambda n: backup_file_for(Path(n)).created_at,
        reverse=True,
    )
    if name is None:
        if not whole:
            raise BackupError(f"No backup with its checksum file in {target.url}.")
        name = whole[0]
    backup_file_for(Path(name))  # a backup's name, never a path
    if name not in whole:
        raise BackupError(f"{target.url} holds no backup {name} with its checksum file.")
    directory = options.directory
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = directory / f".{name}.part"
    partial_checksum = directory / f".{name}{CHECKSUM_SUFFIX}.part"
    try:
        with _store_errors(target, f"Downloading {name}"):
            _download(target, client, name + CHECKSUM_SUFFIX, partial_checksum)
            _download(target, client, name, partial)
        expected = partial_checksum.read_text(encoding="utf-8").split()
        if not expected or file_sha256(partial) != expected[0]:
            raise BackupError(f"{name} from {target.url} does not match its checksum file.")
        final = directory / name
        partial.replace(final)
        partial_checksum.replace(final.with_name(name + CHECKSUM_SUFFIX))
    finally:
        partial.unlink(missing_ok=True)
        partial_checksum.unlink(missing_ok=True)
    return backup_file_for(final)
