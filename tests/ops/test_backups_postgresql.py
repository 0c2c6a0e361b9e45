"""Backups, the restore drill and recovery on PostgreSQL (pg_dump / pg_restore), into scratch
databases this module creates and drops; the SQLite pass is in test_backups.py."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from tests.billing.conftest import CATALOG, add_card, new_key
from tollgate.accounts.models import User
from tollgate.billing import services
from tollgate.billing.models import Invoice
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load
from tollgate.ops.backup_conf import BackupSettings
from tollgate.ops.backup_restore import (
    backup_restore,
    database_settings,
    database_table_count,
    pg_database_create,
    pg_database_drop,
    restore_drill,
)
from tollgate.ops.backups import backup_create, backup_open

pytestmark = [
    # pg_dump reads the database from another connection: the data must be committed.
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="pg_dump and pg_restore need PostgreSQL; CI runs this in its PostgreSQL pass",
    ),
]


def _scratch_name(purpose: str) -> str:
    # Named after the configured database, so parallel runs on one server never collide.
    base = connection.settings_dict["NAME"].removeprefix("test_")
    return f"{base}_{purpose}_{secrets.token_hex(4)}"


@pytest.fixture
def paid_subscription(db: Any) -> Invoice:
    catalog_load(document=CATALOG)
    user = User.objects.create_user(email="payer@example.org", password="correct-horse-42-battery")
    customer = services.customer_get_or_create(user=user)
    add_card(customer)
    price = Price.objects.get(plan__code="pro", interval="month", active=True)
    services.subscription_start(customer=customer, price=price, idempotency_key=new_key())
    return Invoice.objects.get(customer=customer)


@pytest.fixture
def empty_database() -> Iterator[dict[str, Any]]:
    name = _scratch_name("restore")
    target = database_settings(name=name)
    pg_database_create(target, name)
    try:
        yield target
    finally:
        pg_database_drop(target, name)


def _options(tmp_path: Any, *, drill_database: str = "unused") -> BackupSettings:
    return BackupSettings(
        directory=tmp_path / "backups",
        key=secrets.token_bytes(32),
        keep_daily=7,
        keep_weekly=4,
        scheduled=False,
        hour=2,
        drill_database=drill_database,
    )


def test_backup_is_a_pg_dump_described_by_its_manifest(paid_subscription, tmp_path):
    options = _options(tmp_path)
    result = backup_create(options=options)

    with backup_open(result.backup, key=options.key) as opened:
        assert opened.manifest["engine"] == "postgresql"
        assert opened.database.read_bytes()[:5] == b"PGDMP"
        assert opened.manifest["money"]["invoices"]["USD"]["amount_paid"] == (
            paid_subscription.amount_paid
        )


def test_restore_drill_passes_and_drops_its_scratch_database(paid_subscription, tmp_path):
    drill_database = _scratch_name("drill")
    options = _options(tmp_path, drill_database=drill_database)
    backup_create(options=options)

    drill = restore_drill(options=options)

    assert drill.ok, [check for check in drill.checks if not check.ok]
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM pg_database WHERE datname = %s", [drill_database])
        assert cursor.fetchone()[0] == 0


def test_restore_into_an_empty_database_reproduces_the_books(
    paid_subscription, tmp_path, empty_database
):
    options = _options(tmp_path)
    result = backup_create(options=options)
    assert database_table_count(empty_database) == 0

    restored = backup_restore(
        backup=result.backup, target=empty_database, data_dir=tmp_path / "data", options=options
    )

    assert restored.differences == []
    assert database_table_count(empty_database) > 0
    again = backup_restore(backup=result.backup, target=empty_database, force=True, options=options)
    assert again.differences == []
