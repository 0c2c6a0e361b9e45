"""Discounts through the Stripe gateway (a real localstripe server): Stripe is charged Tollgate's
amounts after discount, nothing else about a discount reaches it, and reconciliation finds the
gateway and the books in agreement."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.billing.conftest import new_key
from tests.billing.stripe.conftest import CARD_OK, add_card
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Invoice, PaymentAttempt
from tollgate.billing.reconciliation import reconciliation_run
from tollgate.core import clock

pytestmark = pytest.mark.django_db
START = dt.datetime(2025, 1, 31, 10, tzinfo=dt.UTC)
RENEWAL = dt.datetime(2025, 2, 28, 10, tzinfo=dt.UTC)


def test_discounted_charges_are_what_stripe_captures_and_reconciliation_matches(
    stripe_gateway, browser, customer, price, staff
):
    coupon = services.coupon_create(
        name="Launch", percent_off=Decimal("33.33"), duration="forever", actor=staff
    )
    services.promotion_code_create(coupon=coupon, code="LAUNCH", actor=staff)
    add_card(stripe_gateway, browser, customer, CARD_OK)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer,
            price=price("pro"),
            idempotency_key=new_key(),
            promotion_code="launch",
        )
    with clock.frozen(RENEWAL):
        assert billing_run().failed == 0

    invoices = list(Invoice.objects.filter(subscription=subscription).order_by("period_start"))
    assert [(invoice.status, invoice.total) for invoice in invoices] == [("paid", 1933)] * 2
    for payment in PaymentAttempt.objects.all():
        intent = stripe_gateway.payment_intent_get(reference=payment.gateway_reference)
        assert (intent.amount, intent.currency.upper()) == (1933, "USD")

    now = clock.now()
    run = reconciliation_run(since=now - dt.timedelta(hours=1), until=now + dt.timedelta(minutes=1))
    assert run.status == "completed", run.error
    assert (run.mismatches, run.heals) == ([], [])
    assert ledger_check().ok
