"""The copy of backups to an S3-compatible bucket and recovery from it, against a real S3 endpoint
over HTTP: moto's standalone server, started on a free loopback port. Data is built through the
real billing services."""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from django.core.management import CommandError, call_command
from django.db import connection

from tests.billing.conftest import CATALOG, add_card, new_key
from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.models import Invoice
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load
from tollgate.ops import backup_offsite, metrics
from tollgate.ops.backup_conf import (
    BackupSettings,
    S3Target,
    backup_s3_problems,
    backup_settings,
)
from tollgate.ops.backup_offsite import offsite_copy, offsite_fetch, offsite_upload
from tollgate.ops.backup_restore import backup_restore, database_settings
from tollgate.ops.backup_tasks import backup_daily_task
from tollgate.ops.backups import BackupError, backup_create, backups_list, file_sha256

SECRET_ACCESS_KEY = "s3cr3t-" + secrets.token_hex(8)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class S3Server:
    """moto's S3 server in its own process, reached over HTTP like any S3-compatible store."""

    endpoint: str
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls) -> S3Server:
        port = _free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = cls(endpoint=f"http://127.0.0.1:{port}", process=process)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return server
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    server.stop()
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials only through boto3's usual environment, none from the machine's own files."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATOLLGATETEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = S3Server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_server: S3Server, aws_credentials: None) -> str:
    name = f"backups-{secrets.token_hex(4)}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def bucket_settings(settings: Any, tmp_path: Path, s3_server: S3Server, bucket: str) -> Any:
    settings.BACKUP_DIR = str(tmp_path / "backups")
    settings.BACKUP_S3_URL = f"s3://{bucket}/tollgate/prod"
    settings.BACKUP_S3_ENDPOINT = s3_server.endpoint
    settings.BACKUP_S3_REGION = "us-east-1"
    # PostgreSQL: the drill's scratch database, named after this run's database (never shared).
    base = connection.settings_dict["NAME"].removeprefix("test_")
    settings.BACKUP_DRILL_DATABASE = f"{base}_drill_{secrets.token_hex(4)}"
    return settings


def _options(directory: Path, target: S3Target, **changes: Any) -> BackupSettings:
    values: dict[str, Any] = {
        "directory": directory,
        "key": None,
        "keep_daily": 7,
        "keep_weekly": 4,
        "scheduled": False,
        "hour": 2,
        "drill_database": "unused",
        "s3": target,
    } | changes
    return BackupSettings(**values)


def _keys(server: S3Server, bucket: str) -> dict[str, int]:
    listing = server.client().list_objects_v2(Bucket=bucket)
    return {item["Key"]: item["Size"] for item in listing.get("Contents", [])}


# The backup reads the database from outside the test's connection, so the data is committed.
committed = pytest.mark.django_db(transaction=True)


def sqlite_only(test: Callable[..., None]) -> Callable[..., None]:
    test = pytest.mark.django_db(transaction=True)(test)
    return pytest.mark.skipif(
        connection.vendor != "sqlite", reason="the SQLite pass; PostgreSQL has its own test below"
    )(test)


@pytest.fixture
def paid_subscription(db: Any) -> Invoice:
    catalog_load(document=CATALOG)
    user = User.objects.create_user(email="payer@example.org", password="correct-horse-42-battery")
    customer = services.customer_get_or_create(user=user)
    add_card(customer)
    price = Price.objects.get(plan__code="pro", interval="month", active=True)
    services.subscription_start(customer=customer, price=price, idempotency_key=new_key())
    return Invoice.objects.get(customer=customer)


def test_bucket_settings_name_what_is_wrong_without_repeating_secrets():
    def problems(url: str, **others: str) -> list[str]:
        values = {"endpoint": "", "region": "", "server_side_encryption": ""} | others
        return backup_s3_problems(url, **values)

    assert problems("") == []
    assert problems("s3://tollgate-backups/prod") == []
    assert problems("https://tollgate-backups/prod") == [
        "TOLLGATE_BACKUP_S3_URL must look like s3://bucket/prefix."
    ]
    assert "names no bucket" in problems("s3:///prod")[0]
    assert "not a bucket name" in problems("s3://Not_A_Bucket/prod")[0]
    leaked = problems("s3://AKIAXXXX:" + "hunter2" + "@tollgate-backups/prod")
    assert "must not hold credentials" in leaked[0]
    assert "hunter2" not in leaked[0]
    assert "TOLLGATE_BACKUP_S3_ENDPOINT" in problems("s3://b-k-t", endpoint="ftp://store")[0]
    assert "TOLLGATE_BACKUP_S3_SSE" in problems("s3://b-k-t", server_side_encryption="rot13")[0]
    assert "without TOLLGATE_BACKUP_S3_URL" in problems("", endpoint="http://127.0.0.1:9000")[0]


@committed
def test_backup_command_copies_the_backup_and_its_checksum_file_to_the_bucket(
    paid_subscription, bucket_settings, bucket, s3_server, client, captured_logs
):
    call_command("backup")

    [local] = backups_list(Path(bucket_settings.BACKUP_DIR))
    key = f"tollgate/prod/{local.path.name}"
    assert _keys(s3_server, bucket) == {
        key: local.path.stat().st_size,
        key + ".sha256": local.checksum_path.stat().st_size,
    }
    store = s3_server.client()
    remote = store.get_object(Bucket=bucket, Key=key)
    assert remote["Body"].read() == local.path.read_bytes()
    assert remote["Metadata"]["sha256"] == file_sha256(local.path)
    checksum = store.get_object(Bucket=bucket, Key=key + ".sha256")["Body"].read()
    assert checksum == local.checksum_path.read_bytes()

    copied = AuditEvent.objects.get(action="ops.backup_offsite_copied")
    assert copied.details["uploaded"] == [local.path.name]
    assert copied.details["bucket"] == f"s3://{bucket}/tollgate/prod/"
    assert metrics.BACKUP_OFFSITE_LAST_SUCCESS._value.get() > 0
    assert SECRET_ACCESS_KEY not in json.dumps(copied.details)
    assert SECRET_ACCESS_KEY not in captured_logs.text

    staff = User.objects.create_user(
        email="staff@example.org", password="correct-horse-battery-staple-42", is_staff=True
    )
    client.force_login(staff)
    assert "Last copy to the bucket: done" in client.get("/staff/").text

    call_command("backup", "--copy-only")  # nothing missing: nothing sent again
    again = AuditEvent.objects.filter(action="ops.backup_offsite_copied").order_by("-id").first()
    assert again is not None
    assert "uploaded" not in again.details  # empty details are left out
    assert again.details["present"] == 1


def test_a_large_file_goes_up_in_parts_and_is_read_back(s3_server, bucket, tmp_path, monkeypatch):
    monkeypatch.setattr(backup_offsite, "MULTIPART_BYTES", 5 * 1024 * 1024)
    large = tmp_path / "tollgate-20261205T023000.000000Z.tar"
    large.write_bytes(secrets.token_bytes(11 * 1024 * 1024))
    target = S3Target(bucket=bucket, prefix="p/", endpoint_url=s3_server.endpoint)

    offsite_upload(target, backup_offsite._client(target), large, sha256=file_sha256(large))

    head = s3_server.client().head_object(Bucket=bucket, Key=f"p/{large.name}")
    assert head["ContentLength"] == large.stat().st_size
    assert head["ETag"].strip('"').endswith("-3")  # three parts


@committed
def test_the_retention_applies_to_the_bucket_and_touches_nothing_else(
    paid_subscription, s3_server, bucket, tmp_path
):
    store = s3_server.client()
    foreign = [
        "elsewhere/tollgate-20200101T000000.000000Z.tar",
        "tollgate/prod/notes.txt",
        "tollgate/prod/older/tollgate-20200101T000000.000000Z.tar",
        "tollgate/production-copy/tollgate-20200101T000000.000000Z.tar",
    ]
    for key in foreign:
        store.put_object(Bucket=bucket, Key=key, Body=b"not ours")
    target = S3Target(bucket=bucket, prefix="tollgate/prod/", endpoint_url=s3_server.endpoint)
    options = _options(tmp_path / "backups", target, keep_weekly=0, keep_daily=1)
    first = backup_create(options=options).backup
    assert offsite_copy(options=options).uploaded == [first.path.name]
    second = backup_create(options=options).backup  # the same day: the first is dropped locally

    result = offsite_copy(options=options)

    assert result.uploaded == [second.path.name]
    assert result.removed == [first.path.name]
    mine = {f"tollgate/prod/{second.path.name}", f"tollgate/prod/{second.path.name}.sha256"}
    assert set(_keys(s3_server, bucket)) == mine | set(foreign)

    # A new machine, its backup directory empty: the bucket keeps what the retention keeps.
    for path in (second.path, second.checksum_path):
        path.unlink()
    assert offsite_copy(options=options).removed == []
    assert set(_keys(s3_server, bucket)) == mine | set(foreign)


@committed
def test_a_failed_copy_keeps_the_local_backup_exits_non_zero_and_is_made_good_next_run(
    paid_subscription, bucket_settings, bucket, s3_server, client
):
    unreachable = S3Server.start()
    unreachable.stop()  # a port where nothing answers any more
    bucket_settings.BACKUP_S3_ENDPOINT = unreachable.endpoint

    with pytest.raises(CommandError, match="local backups are intact") as failure:
        call_command("backup")

    assert f"s3://{bucket}/tollgate/prod/" in str(failure.value)
    [local] = backups_list(Path(bucket_settings.BACKUP_DIR))
    assert local.checksum_path.read_text().split()[0] == file_sha256(local.path)
    failed = AuditEvent.objects.get(action="ops.backup_offsite_failed")
    assert "Listing the backups" in failed.details["error"]
    assert AuditEvent.objects.filter(action="ops.backup_created").count() == 1
    client.force_login(
        User.objects.create_user(
            email="staff@example.org", password="correct-horse-battery-staple-42", is_staff=True
        )
    )
    page = client.get("/staff/").text
    assert "Last copy to the bucket: <strong>failed</strong>" in page
    assert "(last success: never)" in page

    bucket_settings.BACKUP_S3_ENDPOINT = s3_server.endpoint  # the store is back
    call_command("backup", "--copy-only")

    assert f"tollgate/prod/{local.path.name}" in _keys(s3_server, bucket)


@committed
def test_the_daily_task_copies_and_records_a_failed_copy_after_the_drill(
    paid_subscription, bucket_settings, bucket, s3_server
):
    backup_daily_task()
    assert AuditEvent.objects.filter(action="ops.backup_offsite_copied").count() == 1

    bucket_settings.BACKUP_S3_URL = "s3://no-such-bucket-here/tollgate"
    with pytest.raises(BackupError, match="no-such-bucket-here"):
        backup_daily_task.call_local()  # as the worker runs it, which logs what it raises

    assert AuditEvent.objects.filter(action="ops.backup_offsite_failed").count() == 1
    assert AuditEvent.objects.filter(action="ops.restore_drill_passed").count() == 2
    [kept] = backups_list(Path(bucket_settings.BACKUP_DIR))  # the day's newest, left intact
    assert kept.checksum_path.read_text().split()[0] == file_sha256(kept.path)


@sqlite_only
def test_recovery_from_the_bucket_into_an_empty_directory_and_database(
    paid_subscription, bucket_settings, s3_server, bucket, tmp_path
):
    bucket_settings.BACKUP_KEY = base64.b64encode(secrets.token_bytes(32)).decode()
    call_command("backup")
    directory = Path(bucket_settings.BACKUP_DIR)
    [made] = backups_list(directory)
    assert made.encrypted
    for path in directory.iterdir():
        path.unlink()

    call_command("restore_drill", "--from-s3")  # fetches the newest, checks it, drills it
    [fetched] = backups_list(directory)
    assert fetched.path.name == made.path.name
    assert fetched.path.stat().st_mode & 0o077 == 0
    with pytest.raises(CommandError, match="already has"):  # the live database is never mixed
        call_command("restore", "--from-s3", made.path.name, "--yes")

    for path in directory.iterdir():
        path.unlink()
    options = backup_settings()
    backup = offsite_fetch(options=options)
    target = database_settings(name=str(tmp_path / "recovered.sqlite3"))
    restored = backup_restore(
        backup=backup, target=target, data_dir=tmp_path / "data", options=options
    )
    assert restored.differences == []


@committed
def test_a_backup_changed_in_the_bucket_is_refused_and_not_kept(
    paid_subscription, bucket_settings, s3_server, bucket
):
    call_command("backup")
    directory = Path(bucket_settings.BACKUP_DIR)
    [made] = backups_list(directory)
    damaged = bytearray(made.path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    s3_server.client().put_object(
        Bucket=bucket, Key=f"tollgate/prod/{made.path.name}", Body=bytes(damaged)
    )
    for path in directory.iterdir():
        path.unlink()

    with pytest.raises(CommandError, match="does not match its checksum file"):
        call_command("restore", "--from-s3", "--yes")
    assert list(directory.iterdir()) == []
    with pytest.raises(CommandError, match="holds no backup"):
        call_command("restore", "--from-s3", "tollgate-20200101T000000.000000Z.tar", "--yes")


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="pg_dump and pg_restore need PostgreSQL"
)
def test_postgresql_backup_recovered_from_the_bucket_reproduces_the_books(
    paid_subscription, s3_server, bucket, tmp_path
):
    from tests.ops.test_backups_postgresql import _scratch_name
    from tollgate.ops.backup_restore import pg_database_create, pg_database_drop

    target = S3Target(bucket=bucket, prefix="pg/", endpoint_url=s3_server.endpoint)
    options = _options(tmp_path / "backups", target, key=secrets.token_bytes(32))
    made = backup_create(options=options).backup
    offsite_copy(options=options)
    for path in (made.path, made.checksum_path):
        path.unlink()
    name = _scratch_name("s3restore")
    empty = database_settings(name=name)
    pg_database_create(empty, name)
    try:
        fetched = offsite_fetch(options=options)
        restored = backup_restore(
            backup=fetched, target=empty, data_dir=tmp_path / "data", options=options
        )
    finally:
        pg_database_drop(empty, name)
    assert fetched.path.name == made.path.name
    assert restored.differences == []
