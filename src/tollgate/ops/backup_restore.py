"""Restoring a backup: into the configured database (recovery) or into a scratch database that is
checked and thrown away (the restore drill)."""

from __future__ import annotations

import contextlib
import copy
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.loader import MigrationLoader
from django.db.utils import load_backend
from psycopg import sql

from tollgate.billing.integrity import ledger_check
from tollgate.core.redaction import scrub_text
from tollgate.ops.backup_conf import BackupSettings, backup_settings
from tollgate.ops.backups import (
    PG_MEMBER,
    SECRET_KEY_MEMBER,
    BackupError,
    BackupFile,
    OpenedBackup,
    backup_latest,
    backup_open,
    database_facts,
    facts_differences,
    is_postgresql,
    pg_environment,
    pg_program,
    pg_run,
    sqlite_unpack,
)

# --- Databases --------------------------------------------------------------------------------------


def database_settings(*, name: str | None = None) -> dict[str, Any]:
    """The configured database's settings, optionally naming another database on the same server
    (or another SQLite file); without a connection pool, so nothing stays connected after use."""
    settings_dict = copy.deepcopy(connections[DEFAULT_DB_ALIAS].settings_dict)
    settings_dict["OPTIONS"].pop("pool", None)
    if name is not None:
        settings_dict["NAME"] = name
    return settings_dict


@contextlib.contextmanager
def _pg_server(settings_dict: dict[str, Any]) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the server's maintenance database, to create and drop databases."""
    env = pg_environment(settings_dict, name="postgres")
    with psycopg.connect(
        host=env.get("PGHOST"),
        port=env.get("PGPORT"),
        user=env.get("PGUSER"),
        password=env.get("PGPASSWORD"),
        dbname="postgres",
        sslmode=env.get("PGSSLMODE", "prefer"),
        connect_timeout=10,
        autocommit=True,
    ) as connection:
        yield connection


def pg_database_create(settings_dict: dict[str, Any], name: str) -> None:
    with _pg_server(settings_dict) as server:
        server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def pg_database_drop(settings_dict: dict[str, Any], name: str) -> None:
    with _pg_server(settings_dict) as server:
        server.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def database_table_count(settings_dict: dict[str, Any]) -> int:
    """How many tables the database holds (0: empty, safe to restore into)."""
    if is_postgresql(settings_dict):
        env = pg_environment(settings_dict)
        with psycopg.connect(
            host=env.get("PGHOST"),
            port=env.get("PGPORT"),
            user=env.get("PGUSER"),
            password=env.get("PGPASSWORD"),
            dbname=settings_dict["NAME"],
            sslmode=env.get("PGSSLMODE", "prefer"),
            connect_timeout=10,
        ) as connection:
            row = connection.execute(
                "SELECT COUNT(*) FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            ).fetchone()
            return int(row[0]) if row else 0
    name = str(settings_dict["NAME"])
    if not name.startswith("file:") and not Path(name).exists():
        return 0
    with contextlib.closing(_sqlite_connect(name)) as connection:
        row = connection.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchone()
        return int(row[0])


def _sqlite_connect(name: str) -> sqlite3.Connection:
    # Django names an in-memory test database with a URI ("file:memorydb_default?mode=memory...").
    return sqlite3.connect(name, uri=name.startswith("file:"), timeout=20)


def _load_database(opened: OpenedBackup, settings_dict: dict[str, Any], *, clean: bool) -> None:
    """The backup's database written into the (empty, unless ``clean``) target database."""
    postgres_backup = opened.manifest["engine"] == "postgresql"
    if postgres_backup != is_postgresql(settings_dict):
        raise BackupError(
            f"{opened.backup.path.name} is a {opened.manifest['engine']} backup; the target "
            "database is not. Restore into the engine it was made from."
        )
    if postgres_backup:
        argv = [pg_program("pg_restore"), "--no-owner", "--no-acl", "--single-transaction"]
        argv += ["--exit-on-error", f"--dbname={settings_dict['NAME']}"]
        argv += ["--clean", "--if-exists"] if clean else []
        pg_run(
            [*argv, str(opened.workdir / PG_MEMBER)],
            env=pg_environment(settings_dict),
            what="pg_restore",
        )
        return
    with tempfile.TemporaryDirectory(prefix="tollgate-restore-") as temporary:
        unpacked = Path(temporary) / "database.sqlite3"
        sqlite_unpack(opened.database, unpacked)
        target = str(settings_dict["NAME"])
        if not target.startswith("file:"):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        # The backup API replaces the target's pages as one write: other connections see the old
        # database or the restored one, never a mixture.
        with (
            contextlib.closing(sqlite3.connect(unpacked)) as source,
            contextlib.closing(_sqlite_connect(target)) as destination,
        ):
            source.backup(destination)


@contextlib.contextmanager
def database_as_default(settings_dict: dict[str, Any]) -> Iterator[Any]:
    """Run this thread's ORM queries (selectors, migrations) against another database.

    Django keeps one connection per alias and thread; the default one is swapped for this thread only
    and put back on exit, so the checks of the restored copy are the very code that checks the live
    books, and no other thread (a web request, another worker task) is affected.
    """
    backend = load_backend(settings_dict["ENGINE"])
    scratch = backend.DatabaseWrapper(settings_dict, alias=DEFAULT_DB_ALIAS)
    previous = connections[DEFAULT_DB_ALIAS]
    connections[DEFAULT_DB_ALIAS] = scratch
    try:
        yield scratch
    finally:
        scratch.close()
        connections[DEFAULT_DB_ALIAS] = previous


def _facts_of(settings_dict: dict[str, Any]) -> dict[str, Any]:
    with database_as_default(settings_dict) as connection, connection.cursor() as cursor:
        return database_facts(cursor)


# --- Restore ----------------------------------------------------------------------------------------


@dataclass
class RestoreResult:
    backup: BackupFile
    seconds: float
    differences: list[str]
    secret_key_restored: bool


def _restore_files(opened: OpenedBackup, data_dir: Path) -> bool:
    """The backup's secret key written into the data directory; True when that changed the file."""
    secret_key = opened.member(SECRET_KEY_MEMBER)
    if secret_key is None:
        return False
    target = data_dir / "secret_key"
    data = secret_key.read_bytes()
    if target.is_file() and target.read_bytes() == data:
        return False
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(".secret_key.restoring")
    temporary.write_bytes(data)
    temporary.chmod(0o600)
    temporary.replace(target)
    return True


def backup_restore(
    *,
    backup: BackupFile,
    force: bool = False,
    target: dict[str, Any] | None = None,
    data_dir: Path | None = None,
    options: BackupSettings | None = None,
) -> RestoreResult:
    """Recovery: ``backup`` checked, then written into the configured database (or ``target``) and
    its secret key into the data directory. Refuses a database that has tables unless ``force``
    (PostgreSQL: the backup's objects are dropped and recreated in one transaction; SQLite: the file's
    content is replaced). Returns where the restored data differs from the manifest (nothing, when
    it worked)."""
    options = options or backup_settings()
    settings_dict = target or database_settings()
    started = time.monotonic()
    tables = database_table_count(settings_dict)
    if tables and not force:
        raise BackupError(
            f"The target database already has {tables} tables; restoring would mix two "
            "installations. Use an empty database, or --force to replace its content."
        )
    with backup_open(backup, key=options.key) as opened:
        _load_database(opened, settings_dict, clean=bool(tables))
        differences = facts_differences(opened.manifest_facts, _facts_of(settings_dict))
        restored_key = _restore_files(opened, data_dir or Path(settings.DATA_DIR))
    return RestoreResult(
        backup=backup,
        seconds=time.monotonic() - started,
        differences=differences,
        secret_key_restored=restored_key,
    )


# --- The restore drill ------------------------------------------------------------------------------


@dataclass
class DrillCheck:
    name: str
    ok: bool
    detail: str


@dataclass
class DrillResult:
    backup: BackupFile | None
    seconds: float = 0.0
    checks: list[DrillCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(DrillCheck(name=name, ok=ok, detail=detail))


def _migrations_check(result: DrillResult, connection: Any) -> bool:
    """The restored schema against this version's migrations: migrations the code does not know
    (a backup from a newer version) fail the drill; pending ones are applied, as after a real
    restore, so the upgrade path is exercised too."""
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    known = set(loader.disk_migrations)
    applied = set(loader.applied_migrations)
    unknown = sorted(f"{app}.{name}" for app, name in applied - known)
    if unknown:
        result.add(
            "migrations", False, "applied in the backup, unknown here: " + ", ".join(unknown)
        )
        return False
    pending = sorted(f"{app}.{name}" for app, name in known - applied)
    if pending:
        call_command("migrate", interactive=False, verbosity=0)
        result.add("migrations", True, f"{len(pending)} pending migrations applied cleanly")
    else:
        result.add("migrations", True, "schema matches this version's migrations")
    return True


def _drill_checks(result: DrillResult, opened: OpenedBackup, settings_dict: dict[str, Any]) -> None:
    with database_as_default(settings_dict) as connection:
        with connection.cursor() as cursor:
            differences = facts_differences(opened.manifest_facts, database_facts(cursor))
        counts = opened.manifest["row_counts"]
        result.add(
            "row counts and money totals",
            not differences,
            "; ".join(differences[:20])
            or f"{sum(counts.values())} rows in {len(counts)} tables and every total match",
        )
        if not _migrations_check(result, connection):
            return
        report = ledger_check()
        result.add(
            "ledger check",
            report.ok,
            "; ".join(f"{p.kind} {p.reference}: {p.detail}" for p in report.problems[:20])
            or f"{report.transactions_checked} transactions and {report.invoices_checked} "
            "invoices balance",
        )


def restore_drill(
    *, backup: BackupFile | None = None, options: BackupSettings | None = None
) -> DrillResult:
    """The latest backup (or ``backup``) restored into a scratch database (PostgreSQL: created, then
    dropped; SQLite: a temporary file) and checked: checksums and authentication, row counts and
    money totals against the manifest, migrations, the ledger check. Never raises for a failed check:
    the result says what failed."""
    options = options or backup_settings()
    started = time.monotonic()
    result = DrillResult(backup=None)
    try:
        result.backup = backup or backup_latest(options.directory)
        with backup_open(result.backup, key=options.key) as opened:
            result.add("checksums", True, f"{len(opened.manifest['files'])} files match")
            _drill_restore_and_check(result, opened, options)
    except BackupError as exc:
        result.add("backup", False, exc.message)
    except Exception as exc:  # the drill reports every failure rather than dying on it
        result.add("restore", False, scrub_text(f"{type(exc).__name__}: {exc}"))
    result.seconds = time.monotonic() - started
    return result


def _drill_restore_and_check(
    result: DrillResult, opened: OpenedBackup, options: BackupSettings
) -> None:
    if opened.manifest["engine"] == "postgresql":
        scratch = database_settings(name=options.drill_database)
        if not is_postgresql(scratch):
            raise BackupError("A PostgreSQL backup needs a PostgreSQL server to be restored into.")
        pg_database_drop(scratch, options.drill_database)  # left over by an interrupted drill
        pg_database_create(scratch, options.drill_database)
        try:
            _load_database(opened, scratch, clean=False)
            result.add("restore", True, f"restored into database {options.drill_database}")
            _drill_checks(result, opened, scratch)
        finally:
            pg_database_drop(scratch, options.drill_database)
        return
    with tempfile.TemporaryDirectory(prefix="tollgate-drill-") as temporary:
        path = Path(temporary) / "restored.sqlite3"
        sqlite_unpack(opened.database, path)
        result.add("restore", True, "restored into a temporary SQLite file")
        scratch = database_settings(name=str(path))
        scratch["ENGINE"] = "django.db.backends.sqlite3"
        _drill_checks(result, opened, scratch)
