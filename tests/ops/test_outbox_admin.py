"""The outbox and idempotency records in the admin: read-only, with a retry for failed messages."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse

from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.core import clock
from tollgate.core.models import IdempotencyRecord, OutboxMessage

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client: Client) -> Client:
    staff = User.objects.create_user(
        email="ops-staff@example.org",
        password="correct-horse-battery-staple-42",
        is_staff=True,
        is_superuser=True,
    )
    client.force_login(staff)
    return client


def _message(key: str, status: str) -> OutboxMessage:
    return OutboxMessage.objects.create(
        kind="test.noop",
        dedupe_key=key,
        status=status,
        attempts=8,
        last_error="ConnectionError: refused",
        available_at=clock.now() - dt.timedelta(days=1),
        payload={"to": "someone@example.org"},
    )


@pytest.mark.parametrize("model", [OutboxMessage, IdempotencyRecord])
def test_staff_can_list_and_read_but_not_change_them(staff_client: Client, model: type) -> None:
    if model is OutboxMessage:
        record = _message("admin-read", OutboxMessage.Status.FAILED)
    else:
        record = IdempotencyRecord.objects.create(
            scope="cus_1", key="k1", operation="refund", fingerprint="a" * 64, lease_token="t"
        )
    opts = model._meta
    listing = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert listing.status_code == 200
    detail = staff_client.get(
        reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[record.pk])
    )
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content
    assert b"someone@example.org" not in detail.content  # payloads are not shown
    add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
    assert staff_client.get(add).status_code == 403


def test_retry_makes_failed_messages_pending_and_due_now_and_is_audited(
    staff_client: Client,
) -> None:
    failed = _message("admin-failed", OutboxMessage.Status.FAILED)
    delivered = _message("admin-delivered", OutboxMessage.Status.DELIVERED)
    response = staff_client.post(
        reverse("admin:core_outboxmessage_changelist"),
        {"action": "retry", "_selected_action": [failed.pk, delivered.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "1 message(s) will be delivered again" in response.content.decode()
    failed.refresh_from_db()
    delivered.refresh_from_db()
    assert failed.status == OutboxMessage.Status.PENDING
    assert failed.attempts == 0
    assert failed.available_at <= clock.now()
    assert delivered.status == OutboxMessage.Status.DELIVERED
    [event] = AuditEvent.objects.filter(action="ops.outbox_message_retried")
    assert event.actor is not None
    assert event.actor.email == "ops-staff@example.org"
