"""Disputes in the admin: listed for staff with those needing attention first, read-only, and
"Mark as seen" clears the flag (audited) until the dispute changes again."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.models import Dispute, PaymentAttempt
from tollgate.billing.services.disputes import DisputeReport, dispute_record

pytestmark = pytest.mark.django_db


def report(payment: PaymentAttempt, reference: str, status: str) -> DisputeReport:
    return DisputeReport(
        gateway=payment.gateway,
        reference=reference,
        payment_reference=payment.gateway_reference,
        amount=payment.amount,
        currency=payment.currency,
        reason="fraudulent",
        status=status,
    )


@pytest.fixture
def payment(customer, price) -> PaymentAttempt:
    add_card(customer, CARD_OK)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    return PaymentAttempt.objects.get()


def test_staff_see_disputes_needing_attention_first_and_can_mark_them_seen(client, staff, payment):
    seen = dispute_record(report=report(payment, "dp_seen", "under_review"))
    fresh = dispute_record(report=report(payment, "dp_fresh", "needs_response"))
    staff.is_superuser = True
    staff.save(update_fields=["is_superuser"])
    client.force_login(staff)
    url = reverse("admin:billing_dispute_changelist")

    response = client.post(url, {"action": "mark_seen", "_selected_action": [seen.pk]})
    assert response.status_code == 302
    listing = client.get(url)

    assert listing.status_code == 200
    html = listing.content.decode()
    assert html.index(fresh.public_id) < html.index(seen.public_id)
    seen.refresh_from_db()
    assert seen.needs_attention is False
    assert AuditEvent.objects.filter(action="billing.dispute_acknowledged").count() == 1
    detail = client.get(reverse("admin:billing_dispute_change", args=[seen.pk]))
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content

    # News about it raises the flag again.
    closed = dispute_record(report=report(payment, "dp_seen", "lost"))
    assert (closed.status, closed.needs_attention) == ("lost", True)


def test_a_dispute_never_moves_back_and_a_repeat_changes_nothing(payment):
    dispute_record(report=report(payment, "dp_1", "won"))
    for status in ("needs_response", "under_review", "won"):
        again = dispute_record(report=report(payment, "dp_1", status))
        assert again.status == "won"
    assert Dispute.objects.count() == 1
    assert list(
        AuditEvent.objects.filter(action__startswith="billing.dispute_").values_list(
            "action", flat=True
        )
    ) == ["billing.dispute_opened"]
