"""Backups of the database and the data directory's secret key, in one file per backup.

A backup is ``tollgate-<UTC time>.tar`` (``.tar.enc`` when TOLLGATE_BACKUP_KEY is set) in the backup
directory, beside a ``.sha256`` file in ``sha256sum`` format. The tar holds:

- ``manifest.json``: when, from which engine, the SHA-256 of every other member, the latest applied
  migration per app, row counts of the main tables and money totals, all read from the same snapshot
  as the dump;
- ``database.pgdump`` (``pg_dump --format=custom``, compressed) or ``database.sqlite3.gz`` (SQLite's
  online backup API, then gzip);
- ``data/secret_key`` when the data directory has one (sessions, signed links and the sandbox
  gateway's webhook secret depend on it).

Encrypted backups are AES-256-GCM (authenticated: a changed byte is refused, never restored) over the
whole tar: ``MAGIC``, an 8-byte key id (so a wrong key is named as such), a 12-byte nonce, the
ciphertext, then the 16-byte tag. The header is authenticated too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.apps import apps
from django.conf import settings
from django.db import connections, transaction

from tollgate.core import clock
from tollgate.core.errors import TollgateError
from tollgate.core.redaction import scrub_text
from tollgate.ops.backup_conf import BackupSettings, backup_settings

FORMAT_VERSION = 1
MAGIC = b"TOLLGATE-BACKUP-AES256GCM-1\n"
_KEY_ID_BYTES = 8
_NONCE_BYTES = 12
_TAG_BYTES = 16
_CHUNK = 1024 * 1024
_NAME = re.compile(r"^tollgate-(\d{8}T\d{6}\.\d{6}Z)\.tar(\.enc)?$")
_STAMP = "%Y%m%dT%H%M%S.%fZ"
PG_MEMBER = "database.pgdump"
SQLITE_MEMBER = "database.sqlite3.gz"
SECRET_KEY_MEMBER = "data/secret_key"  # noqa: S105 - a file name in the archive
# The tables whose row counts a backup records and a restore must reproduce.
MAIN_MODELS = (
    "accounts.User",
    "catalog.Product",
    "catalog.Plan",
    "catalog.Price",
    "billing.Customer",
    "billing.PaymentMethod",
    "billing.Subscription",
    "billing.Invoice",
    "billing.InvoiceLine",
    "billing.PaymentAttempt",
    "billing.Refund",
    "billing.Dispute",
    "billing.LedgerTransaction",
    "billing.LedgerEntry",
    "integrations.ApiKey",
    "audit.AuditEvent",
)
Progress = Callable[[int, int], None]


class BackupError(TollgateError):
    code = "backup_failed"
    status = 500
    default_message = "The backup could not be made or read."


@dataclass(frozen=True)
class BackupFile:
    path: Path
    created_at: dt.datetime

    @property
    def encrypted(self) -> bool:
        return self.path.suffix == ".enc"

    @property
    def checksum_path(self) -> Path:
        return self.path.with_name(self.path.name + ".sha256")


@dataclass
class BackupResult:
    backup: BackupFile
    manifest: dict[str, Any]
    size: int
    seconds: float
    removed: list[Path] = field(default_factory=list)


# --- Files and checksums ----------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def backups_list(directory: Path | None = None) -> list[BackupFile]:
    """The backups in the backup directory, newest first (by the time in their names)."""
    directory = directory or backup_settings().directory
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        if match := _NAME.match(path.name):
            created = dt.datetime.strptime(match.group(1), _STAMP).replace(tzinfo=dt.UTC)
            found.append(BackupFile(path=path, created_at=created))
    return sorted(found, key=lambda backup: backup.created_at, reverse=True)


def backup_latest(directory: Path | None = None) -> BackupFile:
    backups = backups_list(directory)
    if not backups:
        raise BackupError(
            f"No backup in {directory or backup_settings().directory}; "
            "run `python -m tollgate backup` first."
        )
    return backups[0]


def backup_file_for(path: Path) -> BackupFile:
    match = _NAME.match(path.name)
    if match is None:
        raise BackupError(f"{path.name} is not a backup's name (tollgate-<time>.tar[.enc]).")
    created = dt.datetime.strptime(match.group(1), _STAMP).replace(tzinfo=dt.UTC)
    return BackupFile(path=path, created_at=created)


# --- Encryption -------------------------------------------------------------------------------------


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"tollgate-backup-key-id" + key).digest()[:_KEY_ID_BYTES]


def encrypt_file(source: Path, target: Path, *, key: bytes) -> None:
    """``source`` encrypted with AES-256-GCM into ``target`` (streamed, any size)."""
    header = MAGIC + key_id(key) + secrets.token_bytes(_NONCE_BYTES)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(header[-_NONCE_BYTES:])).encryptor()
    encryptor.authenticate_additional_data(header)
    with source.open("rb") as plain, target.open("wb") as out:
        out.write(header)
        while chunk := plain.read(_CHUNK):
            out.write(encryptor.update(chunk))
        out.write(encryptor.finalize())
        out.write(encryptor.tag)


def decrypt_file(source: Path, target: Path, *, key: bytes | None) -> None:
    """``source`` decrypted into ``target``; refused (and ``target`` removed) when the key is not
    the one it was made with or any byte was changed."""
    header_size = len(MAGIC) + _KEY_ID_BYTES + _NONCE_BYTES
    with source.open("rb") as encrypted:
        header = encrypted.read(header_size)
        if len(header) < header_size or not header.startswith(MAGIC):
            raise BackupError(f"{source.name} is not an encrypted Tollgate backup.")
        if key is None:
            raise BackupError(
                f"{source.name} is encrypted; set TOLLGATE_BACKUP_KEY (or _FILE) to its key."
            )
        if header[len(MAGIC) : len(MAGIC) + _KEY_ID_BYTES] != key_id(key):
            raise BackupError(
                f"{source.name} was encrypted with another key than TOLLGATE_BACKUP_KEY."
            )
        end = encrypted.seek(0, os.SEEK_END)
        if end < header_size + _TAG_BYTES:
            raise BackupError(f"{source.name} is cut short.")
        encrypted.seek(end - _TAG_BYTES)
        tag = encrypted.read(_TAG_BYTES)
        encrypted.seek(header_size)
        decryptor = Cipher(algorithms.AES(key), modes.GCM(header[-_NONCE_BYTES:], tag)).decryptor()
        decryptor.authenticate_additional_data(header)
        remaining = end - _TAG_BYTES - header_size
        with target.open("wb") as out:
            while remaining:
                chunk = encrypted.read(min(_CHUNK, remaining))
                remaining -= len(chunk)
                out.write(decryptor.update(chunk))
            try:
                out.write(decryptor.finalize())
            except InvalidTag:
                out.close()
                target.unlink()
                raise BackupError(
                    f"{source.name} fails authentication: it was changed or damaged."
                ) from None


# --- What a database holds --------------------------------------------------------------------------


def _table(label: str) -> str:
    return apps.get_model(label)._meta.db_table


def _column(label: str, name: str) -> str:
    return apps.get_model(label)._meta.get_field(name).column


def database_facts(cursor: Any) -> dict[str, Any]:
    """Latest applied migration per app, row counts of the main tables and money totals, read with
    a DB-API ``cursor`` (Django's, or a plain ``sqlite3`` one on a copy), so a backup's manifest and
    a restored database are described by the same queries."""
    cursor.execute("SELECT app, name FROM django_migrations")
    migrations: dict[str, str] = {}
    for app, name in cursor.fetchall():
        migrations[app] = max(name, migrations.get(app, ""))
    counts = {}
    for label in MAIN_MODELS:
        # Table names come from the models, never from input.
        cursor.execute(f'SELECT COUNT(*) FROM "{_table(label)}"')  # noqa: S608
        counts[label] = int(cursor.fetchone()[0])
    invoice, entry = _table("billing.Invoice"), _table("billing.LedgerEntry")
    cursor.execute(
        f'SELECT "currency", COUNT(*), COALESCE(SUM("total"), 0), COALESCE(SUM("amount_paid"), 0) '  # noqa: S608
        f'FROM "{invoice}" GROUP BY "currency" ORDER BY "currency"'
    )
    invoices = {
        currency: {"count": int(n), "total": int(total), "amount_paid": int(paid)}
        for currency, n, total, paid in cursor.fetchall()
    }
    account = _column("billing.LedgerEntry", "account")
    cursor.execute(
        f'SELECT "{account}", "currency", COUNT(*), COALESCE(SUM("amount"), 0) FROM "{entry}" '  # noqa: S608
        f'GROUP BY "{account}", "currency" ORDER BY "{account}", "currency"'
    )
    ledger = {
        f"{name} {currency}": {"entries": int(n), "sum": int(total)}
        for name, currency, n, total in cursor.fetchall()
    }
    return {
        "migrations": dict(sorted(migrations.items())),
        "row_counts": counts,
        "money": {"invoices": invoices, "ledger": ledger},
    }


def facts_differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Every place where two descriptions of a database disagree, as ``path: expected != actual``."""
    differences: list[str] = []

    def walk(path: str, left: Any, right: Any) -> None:
        if isinstance(left, dict) and isinstance(right, dict):
            for name in sorted(set(left) | set(right)):
                walk(f"{path}.{name}" if path else name, left.get(name), right.get(name))
        elif left != right:
            differences.append(f"{path}: backup {left!r} != restored {right!r}")

    walk("", expected, actual)
    return differences


# --- Dumping the database ---------------------------------------------------------------------------


def is_postgresql(settings_dict: dict[str, Any]) -> bool:
    return "postgresql" in settings_dict["ENGINE"]


def pg_environment(settings_dict: dict[str, Any], *, name: str | None = None) -> dict[str, str]:
    """The libpq environment for the PostgreSQL client programs: the password travels here, never
    on a command line (where ``ps`` shows it to every user of the machine)."""
    values = {
        "PGHOST": settings_dict.get("HOST") or "",
        "PGPORT": str(settings_dict.get("PORT") or ""),
        "PGUSER": settings_dict.get("USER") or "",
        "PGPASSWORD": settings_dict.get("PASSWORD") or "",
        "PGDATABASE": name or settings_dict["NAME"],
        "PGCONNECT_TIMEOUT": "10",
        "HOME": str(Path.home()),  # ~/.postgresql/ holds client certificates
    }
    options = settings_dict.get("OPTIONS") or {}
    for option, variable in (
        ("sslmode", "PGSSLMODE"),
        ("sslrootcert", "PGSSLROOTCERT"),
        ("sslcert", "PGSSLCERT"),
        ("sslkey", "PGSSLKEY"),
    ):
        if options.get(option):
            values[variable] = str(options[option])
    return {name: value for name, value in values.items() if value}


def pg_program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} is not installed; install the PostgreSQL client (same major version as the "
            "server or newer)."
        )
    return path


def pg_run(argv: list[str], *, env: dict[str, str], what: str) -> None:
    """Run a PostgreSQL client program (fixed arguments, no shell); its error output, scrubbed of
    anything secret-looking, becomes the error."""
    completed = subprocess.run(  # noqa: S603 - fixed argv, no shell
        argv, env=env, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        detail = scrub_text(completed.stderr.strip())[-2000:]
        raise BackupError(f"{what} failed (exit {completed.returncode}): {detail}")


def _dump_postgresql(workdir: Path) -> tuple[Path, dict[str, Any]]:
    """pg_dump of a snapshot exported by a read-only repeatable-read transaction, whose facts are read
    in that same transaction: the manifest describes exactly what was dumped."""
    connection = connections["default"]
    target = workdir / PG_MEMBER
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = cursor.fetchone()[0]
        facts = database_facts(cursor)
        pg_run(
            [
                pg_program("pg_dump"),
                "--format=custom",
                f"--snapshot={snapshot}",
                f"--file={target}",
            ],
            env=pg_environment(connection.settings_dict),
            what="pg_dump",
        )
    return target, facts


def sqlite_copy(target: Path) -> None:
    """A consistent copy of the configured SQLite database through SQLite's online backup API
    (readers and the WAL writer keep working while it copies)."""
    connection = connections["default"]
    if connection.in_atomic_block:
        # The copy waits for this connection's own open write transaction: it would never end.
        raise BackupError("A SQLite backup cannot be made inside a transaction.")
    connection.ensure_connection()
    with contextlib.closing(sqlite3.connect(target)) as copy:
        connection.connection.backup(copy)


def _dump_sqlite(workdir: Path) -> tuple[Path, dict[str, Any]]:
    raw = workdir / "database.sqlite3"
    sqlite_copy(raw)
    with contextlib.closing(sqlite3.connect(raw)) as copy:
        facts = database_facts(copy.cursor())
    target = workdir / SQLITE_MEMBER
    with raw.open("rb") as plain, gzip.open(target, "wb", compresslevel=6) as packed:
        shutil.copyfileobj(plain, packed, _CHUNK)
    raw.unlink()
    return target, facts


# --- Making a backup --------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        out.write(data)


def _pack(workdir: Path, members: list[str], target: Path) -> None:
    with tarfile.open(target, "w") as archive:
        for member in members:
            archive.add(workdir / member, arcname=member, recursive=False)


def backup_create(
    *,
    options: BackupSettings | None = None,
    data_dir: Path | None = None,
    on_progress: Progress | None = None,
) -> BackupResult:
    """A consistent backup of the configured database and the data directory's secret key, written
    whole or not at all (built in a temporary directory beside the backups, then renamed), readable
    only by its owner, then the retention applied. Raises BackupError."""
    options = options or backup_settings()
    data_dir = data_dir or Path(settings.DATA_DIR)
    progress = on_progress or (lambda done, total: None)
    started = clock.now()
    steps = 5
    directory = options.directory
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = f"tollgate-{started.astimezone(dt.UTC).strftime(_STAMP)}.tar"
    final = directory / (name + (".enc" if options.key else ""))
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=directory) as temporary:
        workdir = Path(temporary)
        progress(0, steps)
        connection = connections["default"]
        settings_dict = connection.settings_dict
        if "django_migrations" not in connection.introspection.table_names():
            raise BackupError("The database has no tables yet: nothing to back up (run migrate).")
        database, facts = (
            _dump_postgresql(workdir) if is_postgresql(settings_dict) else _dump_sqlite(workdir)
        )
        progress(1, steps)
        members = [database.name]
        secret_key = data_dir / "secret_key"
        if secret_key.is_file():
            _write_private(workdir / SECRET_KEY_MEMBER, secret_key.read_bytes())
            members.append(SECRET_KEY_MEMBER)
        manifest = {
            "format": FORMAT_VERSION,
            "created_at": started.isoformat(),
            "engine": "postgresql" if is_postgresql(settings_dict) else "sqlite",
            "database_member": database.name,
            "files": {
                member: {
                    "sha256": file_sha256(workdir / member),
                    "bytes": (workdir / member).stat().st_size,
                }
                for member in members
            },
            **facts,
        }
        _write_private(
            workdir / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode()
        )
        progress(2, steps)
        packed = workdir / name
        _pack(workdir, ["manifest.json", *members], packed)
        if options.key:
            encrypt_file(packed, workdir / final.name, key=options.key)
            packed.unlink()
            packed = workdir / final.name
        progress(3, steps)
        packed.chmod(0o600)
        checksum = f"{file_sha256(packed)}  {final.name}\n".encode()
        packed.rename(final)
        _write_private(final.with_name(final.name + ".sha256"), checksum)
    progress(4, steps)
    removed = retention_apply(options=options)
    progress(5, steps)
    return BackupResult(
        backup=backup_file_for(final),
        manifest=manifest,
        size=final.stat().st_size,
        seconds=(clock.now() - started).total_seconds(),
        removed=removed,
    )


def retention_keep(backups: list[BackupFile], *, keep_daily: int, keep_weekly: int) -> set[Path]:
    """The backups to keep: the newest of each of the last ``keep_daily`` days that have one and the
    newest of each of the last ``keep_weekly`` ISO weeks that have one (UTC). The newest backup is
    always kept."""
    keep = {backups[0].path} if backups else set()
    for period, limit in (
        (lambda moment: moment.date(), keep_daily),
        (lambda moment: moment.isocalendar()[:2], keep_weekly),
    ):
        seen: set[object] = set()
        for backup in backups:  # newest first
            bucket = period(backup.created_at)
            if bucket not in seen and len(seen) < limit:
                seen.add(bucket)
                keep.add(backup.path)
    return keep


def retention_apply(*, options: BackupSettings | None = None) -> list[Path]:
    """Delete the backups (and their checksum files) that the retention does not keep."""
    options = options or backup_settings()
    backups = backups_list(options.directory)
    keep = retention_keep(backups, keep_daily=options.keep_daily, keep_weekly=options.keep_weekly)
    removed = []
    for backup in backups:
        if backup.path not in keep:
            backup.checksum_path.unlink(missing_ok=True)
            backup.path.unlink()
            removed.append(backup.path)
    return removed


# --- Reading a backup -------------------------------------------------------------------------------


@dataclass
class OpenedBackup:
    """A backup checked and unpacked into ``workdir``: every member's checksum matched."""

    backup: BackupFile
    workdir: Path
    manifest: dict[str, Any]

    @property
    def database(self) -> Path:
        return self.workdir / self.manifest["database_member"]

    @property
    def manifest_facts(self) -> dict[str, Any]:
        """The part of the manifest :func:`database_facts` reproduces from a restored database."""
        return {name: self.manifest[name] for name in ("migrations", "row_counts", "money")}

    def member(self, name: str) -> Path | None:
        return self.workdir / name if name in self.manifest["files"] else None


def _checksum_expected(backup: BackupFile) -> str | None:
    if not backup.checksum_path.is_file():
        return None
    return backup.checksum_path.read_text(encoding="utf-8").split()[0]


def _extract(archive_path: Path, workdir: Path) -> dict[str, Any]:
    with tarfile.open(archive_path, "r") as archive:
        names = archive.getnames()
        if "manifest.json" not in names:
            raise BackupError(f"{archive_path.name} has no manifest.json.")
        # The "data" filter refuses absolute paths, links out of the directory and device files.
        archive.extractall(workdir, filter="data")
    manifest: dict[str, Any] = json.loads((workdir / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT_VERSION:
        raise BackupError(
            f"Backup format {manifest.get('format')!r} is not one this version reads."
        )
    return manifest


@contextlib.contextmanager
def backup_open(backup: BackupFile, *, key: bytes | None = None) -> Iterator[OpenedBackup]:
    """Check ``backup`` against its ``.sha256`` file, decrypt it, unpack it into a private temporary
    directory and check every member against the manifest; the directory is removed on exit.
    Raises BackupError with what did not match."""
    expected = _checksum_expected(backup)
    if expected is not None and file_sha256(backup.path) != expected:
        raise BackupError(f"{backup.path.name} does not match {backup.checksum_path.name}.")
    with tempfile.TemporaryDirectory(prefix="tollgate-restore-") as temporary:
        workdir = Path(temporary)
        archive_path = backup.path
        if backup.encrypted:
            archive_path = workdir / "backup.tar"
            decrypt_file(backup.path, archive_path, key=key)
        manifest = _extract(archive_path, workdir)
        for name, described in manifest["files"].items():
            path = workdir / name
            if not path.is_file() or file_sha256(path) != described["sha256"]:
                raise BackupError(f"{backup.path.name}: {name} does not match its checksum.")
        yield OpenedBackup(backup=backup, workdir=workdir, manifest=manifest)


def sqlite_unpack(packed: Path, target: Path) -> None:
    with gzip.open(packed, "rb") as source, target.open("wb") as out:
        shutil.copyfileobj(source, out, _CHUNK)
