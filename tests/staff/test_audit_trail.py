"""The audit trail on a customer's staff page says what happened, without empty fields (a
succeeded payment has no decline to show)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.models import PaymentAttempt

pytestmark = pytest.mark.django_db


def audit_trail(response) -> str:
    html = response.content.decode()
    return html[html.index('id="audit-title"') :]


def test_a_paid_invoice_shows_no_empty_decline_in_the_audit_trail(staff_client, customer, price):
    add_card(customer, CARD_OK)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    payment = PaymentAttempt.objects.get(invoice__customer=customer)
    recorded = AuditEvent.objects.get(action="billing.payment_succeeded")
    assert "decline" not in recorded.details
    # An event stored before empty values were left out shows without them too.
    AuditEvent.objects.create(
        action="billing.payment_succeeded",
        target_type="billing.paymentattempt",
        target_id=payment.public_id,
        details={"invoice": payment.invoice.public_id, "decline": "", "decline_kind": ""},
    )

    page = staff_client.get(reverse("staff:customer", args=[customer.public_id]))
    trail = audit_trail(page)
    assert "billing.payment_succeeded" in trail
    assert f"invoice: {payment.invoice.public_id}" in trail
    assert not re.search(r"<li>[\w ]+: </li>", trail), trail
