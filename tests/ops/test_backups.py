"""Backups, the restore drill and recovery, on the test run's own database (SQLite here; the
PostgreSQL pass is in test_backups_postgresql.py). Data is built through the real billing services."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import sqlite3
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from tests.billing.conftest import CATALOG, add_card, new_key
from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.models import Invoice
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load
from tollgate.ops import metrics
from tollgate.ops.backup_conf import BackupSettings, backup_key_decode, backup_key_problem
from tollgate.ops.backup_restore import (
    DrillResult,
    backup_restore,
    database_settings,
    restore_drill,
)
from tollgate.ops.backup_status import backup_status, restore_drill_recorded
from tollgate.ops.backup_tasks import backup_daily_task, backup_due
from tollgate.ops.backups import (
    BackupError,
    BackupFile,
    backup_create,
    backup_open,
    backups_list,
    retention_keep,
)


# The backup reads the database from outside the test's connection, so the data is committed.
def sqlite_only(test: Callable[..., None]) -> Callable[..., None]:
    test = pytest.mark.django_db(transaction=True)(test)
    return pytest.mark.skipif(
        connection.vendor != "sqlite", reason="the SQLite pass; PostgreSQL has its own module"
    )(test)


def _options(directory: Path, *, key: bytes | None = None, **changes: Any) -> BackupSettings:
    values: dict[str, Any] = {
        "directory": directory,
        "key": key,
        "keep_daily": 7,
        "keep_weekly": 4,
        "scheduled": False,
        "hour": 2,
        "drill_database": "unused",
    } | changes
    return BackupSettings(**values)


@pytest.fixture
def paid_subscription(db: Any) -> Invoice:
    """A customer who paid the first invoice of a monthly plan: invoices, payments, ledger rows."""
    catalog_load(document=CATALOG)
    user = User.objects.create_user(email="payer@example.org", password="correct-horse-42-battery")
    customer = services.customer_get_or_create(user=user)
    add_card(customer)
    price = Price.objects.get(plan__code="pro", interval="month", active=True)
    services.subscription_start(customer=customer, price=price, idempotency_key=new_key())
    return Invoice.objects.get(customer=customer)


def test_backup_key_must_be_32_bytes_of_base64():
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    assert backup_key_problem(key) is None
    assert len(backup_key_decode(base64.b64encode(backup_key_decode(key)).decode())) == 32
    problem = backup_key_problem("short-passphrase")
    assert problem is not None
    assert "short-passphrase" not in problem


def test_retention_keeps_the_newest_of_each_recent_day_and_week():
    start = dt.datetime(2026, 1, 1, 2, 30, tzinfo=dt.UTC)
    backups = [
        BackupFile(path=Path(f"b{n}"), created_at=start + dt.timedelta(hours=12 * n))
        for n in range(60)
    ]
    backups.reverse()  # newest first, as backups_list gives them
    keep = retention_keep(backups, keep_daily=3, keep_weekly=2)
    kept = sorted((b.created_at for b in backups if b.path in keep), reverse=True)
    assert kept[0] == backups[0].created_at
    assert len({moment.date() for moment in kept}) == len(kept)
    assert len(kept) == 4  # three days, plus the newest of the previous ISO week


@sqlite_only
def test_backup_holds_a_manifest_with_checksums_counts_and_money_totals(
    paid_subscription, tmp_path, settings
):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "secret_key").write_text("the-installation-secret")
    result = backup_create(options=_options(tmp_path / "backups"), data_dir=data_dir)

    assert result.backup.path.name.endswith(".tar")
    assert result.backup.path.stat().st_mode & 0o077 == 0
    with tarfile.open(result.backup.path) as archive:
        assert sorted(archive.getnames()) == [
            "data/secret_key",
            "database.sqlite3.gz",
            "manifest.json",
        ]
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest["row_counts"]["billing.Invoice"] == 1
    assert manifest["money"]["invoices"]["USD"] == {
        "count": 1,
        "total": paid_subscription.total,
        "amount_paid": paid_subscription.amount_paid,
    }
    assert manifest["money"]["ledger"]
    assert manifest["migrations"]["billing"].startswith("00")
    assert set(manifest["files"]) == {"data/secret_key", "database.sqlite3.gz"}
    checksum = result.backup.checksum_path.read_text().split()
    assert checksum[1] == result.backup.path.name


@sqlite_only
def test_encrypted_backup_opens_only_with_its_key_and_refuses_a_changed_byte(
    paid_subscription, tmp_path
):
    key = secrets.token_bytes(32)
    result = backup_create(options=_options(tmp_path / "backups", key=key))
    assert result.backup.encrypted
    assert b"payer@example.org" not in result.backup.path.read_bytes()

    with backup_open(result.backup, key=key) as opened:
        assert opened.manifest["row_counts"]["billing.Invoice"] == 1
    with (
        pytest.raises(BackupError, match="another key"),
        backup_open(result.backup, key=secrets.token_bytes(32)),
    ):
        pass
    with pytest.raises(BackupError, match="is encrypted"), backup_open(result.backup):
        pass

    result.backup.checksum_path.unlink()  # the sidecar would catch it first; GCM must too
    data = bytearray(result.backup.path.read_bytes())
    data[len(data) // 2] ^= 1
    result.backup.path.write_bytes(bytes(data))
    with (
        pytest.raises(BackupError, match="fails authentication"),
        backup_open(result.backup, key=key),
    ):
        pass


@sqlite_only
def test_restore_drill_passes_on_a_fresh_backup_and_records_the_outcome(
    paid_subscription, tmp_path, settings
):
    settings.BACKUP_DIR = str(tmp_path / "backups")
    settings.BACKUP_KEY = base64.b64encode(secrets.token_bytes(32)).decode()

    call_command("backup")
    call_command("restore_drill")

    assert AuditEvent.objects.filter(action="ops.backup_created").count() == 1
    event = AuditEvent.objects.get(action="ops.restore_drill_passed")
    assert {check["name"] for check in event.details["checks"]} >= {
        "checksums",
        "row counts and money totals",
        "migrations",
        "ledger check",
    }
    status = backup_status()
    assert status.last_drill_ok is True
    assert status.last_backup_at is not None
    assert metrics.RESTORE_DRILL_LAST_RESULT._value.get() == 1
    assert metrics.RESTORE_DRILL_LAST_SUCCESS._value.get() > 0


@sqlite_only
def test_restore_drill_fails_when_the_backup_was_changed(paid_subscription, tmp_path):
    options = _options(tmp_path / "backups")
    result = backup_create(options=options)
    data = bytearray(result.backup.path.read_bytes())
    data[-2000] ^= 1
    result.backup.path.write_bytes(bytes(data))

    drill = restore_drill(options=options)

    assert not drill.ok
    assert "does not match" in drill.checks[-1].detail


@sqlite_only
def test_restore_drill_fails_when_the_books_differ_from_the_manifest(paid_subscription, tmp_path):
    options = _options(tmp_path / "backups")
    result = backup_create(options=options)
    # A backup whose manifest promised other totals (as if rows were lost): rewrite the manifest.
    workdir = tmp_path / "unpacked"
    with tarfile.open(result.backup.path) as archive:
        archive.extractall(workdir, filter="data")
    manifest = json.loads((workdir / "manifest.json").read_text())
    manifest["money"]["invoices"]["USD"]["total"] += 1
    (workdir / "manifest.json").write_text(json.dumps(manifest))
    result.backup.checksum_path.unlink()
    with tarfile.open(result.backup.path, "w") as archive:
        for name in ["manifest.json", *manifest["files"]]:
            archive.add(workdir / name, arcname=name)

    drill = restore_drill(options=options)

    assert not drill.ok
    failed = [check for check in drill.checks if not check.ok]
    assert failed[0].name == "row counts and money totals"
    assert "money.invoices.USD.total" in failed[0].detail


@sqlite_only
def test_restore_into_an_empty_database_reproduces_the_books(paid_subscription, tmp_path):
    result = backup_create(options=_options(tmp_path / "backups"))
    target = database_settings(name=str(tmp_path / "recovered.sqlite3"))
    data_dir = tmp_path / "new-data"

    restored = backup_restore(
        backup=result.backup, target=target, data_dir=data_dir, options=_options(tmp_path)
    )

    assert restored.differences == []
    with sqlite3.connect(tmp_path / "recovered.sqlite3") as copy:
        row = copy.execute("SELECT SUM(total), SUM(amount_paid) FROM billing_invoice").fetchone()
    assert row == (paid_subscription.total, paid_subscription.amount_paid)

    with pytest.raises(BackupError, match="already has"):
        backup_restore(backup=result.backup, target=target, options=_options(tmp_path))
    again = backup_restore(
        backup=result.backup, target=target, force=True, options=_options(tmp_path)
    )
    assert again.differences == []


@sqlite_only
def test_restore_command_needs_yes_and_refuses_the_live_database(paid_subscription, tmp_path):
    result = backup_create(options=_options(tmp_path / "backups"))
    with pytest.raises(CommandError, match="--yes"):
        call_command("restore", str(result.backup.path))
    with pytest.raises(CommandError, match="already has"):
        call_command("restore", str(result.backup.path), "--yes")
    assert Invoice.objects.count() == 1


def test_backup_command_prints_a_key_for_the_setting(capsys):
    call_command("backup", "--generate-key")
    assert backup_key_problem(capsys.readouterr().out.strip()) is None


def test_daily_backup_runs_at_the_configured_hour_only_when_scheduled(settings):
    at = dt.datetime(2026, 12, 5, 2, 30, tzinfo=dt.UTC)
    settings.BACKUP_SCHEDULE = False
    assert not backup_due(at)
    settings.BACKUP_SCHEDULE = True
    assert backup_due(at)
    assert not backup_due(at.replace(minute=31))
    assert not backup_due(at.replace(hour=3))


@sqlite_only
def test_a_second_backup_the_same_day_replaces_the_first(paid_subscription, tmp_path):
    options = _options(tmp_path / "backups", keep_weekly=0)
    first = backup_create(options=options).backup
    second = backup_create(options=options)

    assert second.removed == [first.path]
    assert [backup.path for backup in backups_list(options.directory)] == [second.backup.path]
    assert not first.checksum_path.exists()


def test_staff_home_says_when_the_last_backup_and_restore_drill_were(client, db):
    staff = User.objects.create_user(
        email="staff@example.org", password="correct-horse-battery-staple-42", is_staff=True
    )
    client.force_login(staff)
    assert "Last backup: none recorded" in client.get("/staff/").text

    drill = DrillResult(backup=None)
    drill.add("backup", False, "No backup in var/backups")
    restore_drill_recorded(drill)

    page = client.get("/staff/").text
    assert "Last restore drill: <strong>failed</strong>" in page
    assert metrics.RESTORE_DRILL_LAST_RESULT._value.get() == 0


@sqlite_only
def test_daily_task_backs_up_then_drills_that_backup(paid_subscription, tmp_path, settings):
    settings.BACKUP_DIR = str(tmp_path / "backups")

    backup_daily_task()

    created = AuditEvent.objects.get(action="ops.backup_created")
    drilled = AuditEvent.objects.get(action="ops.restore_drill_passed")
    assert drilled.details["file"] == created.details["file"]
    assert len(backups_list(tmp_path / "backups")) == 1


@pytest.mark.django_db
def test_metrics_report_the_last_backup_and_drill_from_the_record_not_the_process(client, settings):
    """A backup run by another process (cron, the worker) and a restart in between still show."""
    from django.core.cache import cache

    from tollgate.audit.services import audit_record
    from tollgate.ops import backup_status, metrics

    settings.METRICS_TOKEN = ""
    metrics.BACKUP_LAST_SUCCESS.set(0)
    text = client.get("/metrics").content.decode()
    assert "tollgate_restore_drill_last_result -1.0" in text  # no drill yet: not a failure
    audit_record(action=backup_status.ACTION_BACKUP_CREATED, details={"file": "x.tar"})
    cache.clear()
    metrics.BACKUP_LAST_SUCCESS.set(0)  # as in a process that did not run the backup
    text = client.get("/metrics").content.decode()
    line = next(
        row
        for row in text.splitlines()
        if row.startswith("tollgate_backup_last_success_timestamp_seconds ")
    )
    assert float(line.split()[1]) > 1_700_000_000
