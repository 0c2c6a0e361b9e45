"""Disputes as staff see them: those needing attention first, then open ones by when evidence is
due, then closed ones newest first, read in a fixed number of queries."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.billing import reports, services
from tollgate.billing.models import PaymentAttempt
from tollgate.billing.services.disputes import DisputeReport, dispute_acknowledge, dispute_record

pytestmark = pytest.mark.django_db


def report(
    payment: PaymentAttempt, reference: str, status: str, due: dt.datetime | None = None
) -> DisputeReport:
    return DisputeReport(
        gateway=payment.gateway,
        reference=reference,
        payment_reference=payment.gateway_reference,
        amount=payment.amount,
        currency=payment.currency,
        reason="fraudulent",
        status=status,
        evidence_due_by=due,
    )


@pytest.fixture
def payment(customer: Any, price: Any) -> PaymentAttempt:
    add_card(customer, CARD_OK)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    return PaymentAttempt.objects.get()


def test_disputes_needing_attention_come_first_then_open_by_due_date_then_closed(
    payment: PaymentAttempt, staff: Any
) -> None:
    day = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    late = dispute_record(report=report(payment, "dp_late", "under_review", day + dt.timedelta(9)))
    soon = dispute_record(report=report(payment, "dp_soon", "under_review", day))
    closed = dispute_record(report=report(payment, "dp_closed", "lost"))
    fresh = dispute_record(report=report(payment, "dp_fresh", "needs_response"))
    for seen in (late, soon, closed):
        dispute_acknowledge(dispute=seen, actor=staff)

    listed = list(reports.disputes_for_staff())

    assert [d.public_id for d in listed] == [d.public_id for d in (fresh, soon, late, closed)]
    assert reports.disputes_needing_attention_count() == 1


def test_thirty_disputes_are_read_with_their_payment_invoice_and_customer_in_one_query(
    payment: PaymentAttempt, django_assert_max_num_queries: Any
) -> None:
    for n in range(30):
        dispute_record(report=report(payment, f"dp_{n}", "needs_response"))

    with django_assert_max_num_queries(1):
        names = [d.payment.invoice.customer.pk for d in reports.disputes_for_staff() if d.payment]

    assert len(names) == 30


def test_the_disputes_page_lists_them_and_marking_one_as_seen_is_audited(
    payment: PaymentAttempt, staff_client: Any
) -> None:
    from django.urls import reverse

    from tollgate.audit.models import AuditEvent

    dispute = dispute_record(report=report(payment, "dp_page", "needs_response"))
    page = staff_client.get(reverse("staff:disputes")).content.decode()
    assert dispute.public_id in page
    assert "1 needs attention" in page
    assert payment.public_id in page
    assert "$29.00" in page
    assert 'href="/staff/disputes/"' in staff_client.get(reverse("staff:index")).content.decode()

    url = reverse("staff:dispute_acknowledge", args=[dispute.public_id])
    response = staff_client.post(url, follow=True)
    assert "is marked as seen" in response.content.decode()
    assert "None needs attention" in response.content.decode()
    dispute.refresh_from_db()
    assert dispute.needs_attention is False
    assert AuditEvent.objects.filter(
        action="billing.dispute_acknowledged", target_id=dispute.public_id
    ).exists()


def test_the_disputes_pages_are_for_staff_only_and_acknowledging_needs_a_post(
    payment: PaymentAttempt, staff_client: Any, member_client: Any
) -> None:
    from django.test import Client
    from django.urls import reverse

    dispute = dispute_record(report=report(payment, "dp_access", "needs_response"))
    url = reverse("staff:dispute_acknowledge", args=[dispute.public_id])
    assert member_client.get(reverse("staff:disputes")).status_code == 404
    assert member_client.post(url).status_code == 404
    assert Client().get(reverse("staff:disputes")).status_code == 302  # to sign in
    assert staff_client.get(url).status_code == 405
    missing = reverse("staff:dispute_acknowledge", args=["dsp_NOSUCHDISPUTE000000"])
    assert staff_client.post(missing).status_code == 404
    dispute.refresh_from_db()
    assert dispute.needs_attention is True
