"""Staff reading customer data is audited; the compliance export is complete and signed."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.audit.export import audit_export, manifest_verify
from tollgate.audit.models import AuditEvent
from tollgate.audit.services import audit_record
from tollgate.billing import services
from tollgate.billing.models import PaymentAttempt

pytestmark = pytest.mark.django_db


def _last(action: str) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).latest("id")


def test_staff_opening_a_customer_page_is_audited_with_one_event(staff_client, staff, customer):
    before = AuditEvent.objects.count()
    assert staff_client.get(f"/staff/customers/{customer.public_id}/").status_code == 200
    assert AuditEvent.objects.count() == before + 1
    event = _last("staff.viewed_customer")
    assert (event.actor, event.target_id) == (staff, customer.public_id)


def test_staff_opening_an_invoice_is_audited(staff_client, staff, customer, price):
    add_card(customer, CARD_OK)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    invoice = PaymentAttempt.objects.get(status="succeeded").invoice
    assert staff_client.get(f"/staff/invoices/{invoice.public_id}/retry/").status_code == 200
    event = _last("staff.viewed_invoice")
    assert (event.actor, event.target_id) == (staff, invoice.public_id)


def test_a_page_that_does_not_exist_records_nothing(staff_client):
    staff_client.get("/staff/customers/cus_0000000000000000000A/")
    assert not AuditEvent.objects.filter(action="staff.viewed_customer").exists()


def test_the_audit_export_download_is_signed_and_audited(staff_client, staff, user):
    audit_record(action="test.exported", actor=user, target=user)
    today = dt.datetime.now(dt.UTC).date()
    response = staff_client.get(
        "/staff/audit/export/",
        {"since": str(today), "until": str(today + dt.timedelta(days=1)), "format": "csv"},
    )
    assert response.status_code == 200
    bundle = zipfile.ZipFile(io.BytesIO(response.content))
    name = f"audit-{today:%Y%m%d}-{today + dt.timedelta(days=1):%Y%m%d}.csv"
    manifest = json.loads(bundle.read(f"{name}.manifest.json"))
    content = bundle.read(name)
    assert manifest_verify(manifest=manifest, content=content) == []
    assert "test.exported" in content.decode()
    assert _last("staff.viewed_export").actor == staff


def test_the_export_form_refuses_a_window_that_ends_before_it_starts(staff_client):
    response = staff_client.get(
        "/staff/audit/export/", {"since": "2026-02-01", "until": "2026-01-01", "format": "jsonl"}
    )
    assert response.status_code == 422
    assert "The start must be before the end." in response.text


def test_export_holds_the_window_only_and_a_changed_file_or_manifest_fails(user):
    inside = audit_record(action="test.inside", actor=user, target=user, details={"n": 1})
    since = inside.created_at - dt.timedelta(seconds=1)
    until = inside.created_at + dt.timedelta(seconds=1)
    out = io.BytesIO()
    result = audit_export(since=since, until=until, fmt="jsonl", out=out, filename="a.jsonl")
    rows = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    assert [row["public_id"] for row in rows] == [inside.public_id]
    assert rows[0]["chain_hash"] == inside.chain_hash
    assert result.manifest["events"] == 1
    assert manifest_verify(manifest=result.manifest, content=out.getvalue()) == []
    assert manifest_verify(manifest=result.manifest, content=out.getvalue() + b"x")
    forged = {**result.manifest, "events": 0}
    assert manifest_verify(manifest=forged, content=out.getvalue())


def test_audit_export_command_writes_and_verifies_a_signed_manifest(user, tmp_path: Path):
    audit_record(action="test.cmd", actor=user, target=user)
    target = tmp_path / "trail.csv"
    call_command(
        "audit_export",
        "--since",
        "2000-01-01",
        "--format",
        "csv",
        "--output",
        str(target),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    manifest = tmp_path / "trail.csv.manifest.json"
    assert json.loads(manifest.read_text())["events"] == AuditEvent.objects.count()
    call_command("audit_export", "--verify", str(manifest), stdout=io.StringIO())
    target.write_text(target.read_text().replace("test.cmd", "test.cmX"))
    with pytest.raises(CommandError):
        call_command(
            "audit_export", "--verify", str(manifest), stdout=io.StringIO(), stderr=io.StringIO()
        )
