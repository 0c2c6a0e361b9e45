"""Amounts in currencies Stripe counts differently from ISO 4217, against a real localstripe
server: what Tollgate sends is converted to Stripe's units, what Stripe reports is converted back,
and an amount Stripe cannot take exactly never reaches it."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from tests.billing.conftest import new_key
from tests.billing.stripe.conftest import (
    CARD_OK,
    CARD_REQUIRES_AUTHENTICATION,
    add_card,
    deliver,
    event_payload,
)
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.gateways.base import ChargeRequest, GatewayRequestRefused, RefundRequest
from tollgate.billing.gateways.stripe.currencies import stripe_chargeable
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Dispute, Invoice, PaymentAttempt, Refund, StripeRequest
from tollgate.billing.previews import change_preview
from tollgate.billing.states import PaymentStatus, RefundStatus
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load
from tollgate.core import clock

pytestmark = pytest.mark.django_db
START = dt.datetime(2025, 1, 31, 10, tzinfo=dt.UTC)
RENEWAL = dt.datetime(2025, 2, 28, 10, tzinfo=dt.UTC)


def icelandic_price() -> Price:
    catalog_load(
        document={
            "products": [
                {
                    "code": "app",
                    "name": "App",
                    "plans": [
                        {
                            "code": "nordic",
                            "name": "Nordic",
                            "prices": [{"amount": 1000, "currency": "ISK", "interval": "month"}],
                        }
                    ],
                }
            ]
        }
    )
    return Price.objects.get(plan__code="nordic")


@pytest.fixture
def isk_payment(stripe_gateway, browser, customer):
    price = icelandic_price()
    add_card(stripe_gateway, browser, customer, CARD_OK)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price, idempotency_key=new_key()
        )
    return subscription.invoices.get().payments.get()


def test_a_price_of_1000_isk_is_charged_as_1000_isk_at_stripe(stripe_gateway, isk_payment):
    assert (isk_payment.status, isk_payment.amount) == (PaymentStatus.SUCCEEDED, 1000)
    intent = stripe_gateway.payment_intent_get(reference=isk_payment.gateway_reference)
    # Stripe counts ISK in hundredths (always ending in 00): 1,000 ISK is 100000 there.
    assert (intent.amount, intent.currency) == (100000, "isk")
    assert ledger_check().ok


def test_an_isk_refund_is_sent_in_stripes_units_and_listed_back_in_tollgates(
    stripe_gateway, isk_payment, staff
):
    refund = services.refund_issue(
        payment=isk_payment,
        amount=400,
        reason=Refund.Reason.REQUESTED_BY_CUSTOMER,
        note="Goodwill",
        actor=staff,
        idempotency_key=new_key(),
    )
    assert refund.status == RefundStatus.SUCCEEDED
    at_stripe = stripe_gateway.client.v1.refunds.retrieve(refund.gateway_reference)
    assert (at_stripe.amount, at_stripe.currency) == (40000, "isk")

    now = clock.now()
    listed = stripe_gateway.transactions_list(
        since=now - dt.timedelta(hours=1), until=now + dt.timedelta(minutes=1)
    )
    amounts = {(item.kind, item.amount, item.currency) for item in listed}
    assert amounts == {("charge", 1000, "ISK"), ("refund", 400, "ISK")}
    settled = {(item.settled_amount, item.settled_currency) for item in listed}
    assert settled <= {(1000, "ISK"), (400, "ISK"), (None, "")}
    assert ledger_check().ok


def test_a_dispute_stripe_reports_in_isk_is_recorded_in_tollgates_units(
    stripe_gateway, isk_payment, webhook_secrets
):
    dispute = {
        "id": "dp_isk",
        "object": "dispute",
        "amount": 100000,
        "currency": "isk",
        "payment_intent": isk_payment.gateway_reference,
        "charge": "ch_1",
        "reason": "fraudulent",
        "status": "needs_response",
        "evidence_details": {"due_by": int(time.time()) + 7 * 86400},
    }
    payload = event_payload("charge.dispute.created", dispute)
    assert deliver(payload, webhook_secrets[0]).status == "processed"
    assert (Dispute.objects.get().amount, Dispute.objects.get().currency) == (1000, "ISK")


def test_a_kwd_charge_not_ending_in_0_is_refused_without_reaching_stripe(stripe_gateway):
    request = ChargeRequest(
        customer_reference="cus_x",
        payment_method_token="pm_x",
        amount=5125,
        currency="KWD",
        idempotency_key="inv_kwd-attempt-1",
        off_session=True,
    )
    [answer] = stripe_gateway.charge_many(requests=[request])
    assert isinstance(answer, GatewayRequestRefused)
    assert "0.010 KWD" in str(answer)
    assert not StripeRequest.objects.exists()


def test_a_refund_stripe_cannot_take_exactly_fails_without_reaching_stripe(stripe_gateway):
    result = stripe_gateway.refund(
        request=RefundRequest(
            charge_reference="pi_x", amount=105, currency="MGA", idempotency_key="ref_mga"
        )
    )
    assert (result.status, result.failure_code) == ("failed", "amount_not_exact")
    assert not StripeRequest.objects.exists()


def test_the_confirmation_page_shows_the_isk_amount_the_customer_owes(
    stripe_gateway, browser, customer, isk_payment, client
):
    add_card(stripe_gateway, browser, customer, CARD_REQUIRES_AUTHENTICATION)
    with clock.frozen(RENEWAL):
        billing_run()
    payment = PaymentAttempt.objects.get(status=PaymentStatus.REQUIRES_ACTION)
    token = payment.action_url.rstrip("/").rsplit("/", 1)[1]

    page = client.get(f"/stripe/authenticate/{token}/")

    assert page.status_code == 200
    assert "<strong>1,000 ISK</strong>" in page.content.decode()


# Old and new monthly prices per currency, each one Stripe can charge; a mid-period upgrade's raw
# proration of them is not (MGA: whole ariary at Stripe; KWD: the last decimal must be 0).
UPGRADES = {
    "MGA": (1_000_000, 2_500_000),  # 10,000.00 -> 25,000.00 MGA
    "KWD": (5_000, 12_000),  # 5.000 -> 12.000 KWD
    "JPY": (1_000, 2_500),
    "ISK": (1_000, 2_500),
}
# 9 days, 7 h 13 min 11 s into a 28-day period.
MID_PERIOD = START + dt.timedelta(days=9, hours=7, minutes=13, seconds=11)


def two_prices(currency: str) -> tuple[Price, Price]:
    old, new = UPGRADES[currency]
    catalog_load(
        document={
            "products": [
                {
                    "code": "app",
                    "name": "App",
                    "plans": [
                        {
                            "code": code,
                            "name": code.title(),
                            "prices": [
                                {"amount": amount, "currency": currency, "interval": "month"}
                            ],
                        }
                        for code, amount in (("basic", old), ("pro", new))
                    ],
                }
            ]
        }
    )
    return Price.objects.get(plan__code="basic"), Price.objects.get(plan__code="pro")


def subscribed_to_basic(stripe_gateway, browser, customer, currency: str):
    """The customer saves a card and subscribes to the basic price at START; returns the
    subscription and the pro price."""
    basic, pro = two_prices(currency)
    add_card(stripe_gateway, browser, customer, CARD_OK)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=basic, idempotency_key=new_key()
        )
    return subscription, pro


@pytest.mark.parametrize("currency", sorted(UPGRADES))
def test_a_mid_period_upgrade_is_prorated_to_what_stripe_can_charge_and_charged(
    stripe_gateway, browser, customer, currency
):
    subscription, pro = subscribed_to_basic(stripe_gateway, browser, customer, currency)
    with clock.frozen(MID_PERIOD):
        preview = change_preview(subscription=subscription, price=pro, at=MID_PERIOD)
        services.subscription_change_price(
            subscription=subscription, price=pro, idempotency_key=new_key()
        )

    invoice = Invoice.objects.get(billing_reason=Invoice.BillingReason.SUBSCRIPTION_UPDATE)
    lines = sorted(line.amount for line in invoice.lines.all())
    assert lines == [-preview.credit, preview.debit]  # confirmed as previewed
    assert invoice.total == preview.due_now > 0
    for amount in (*[abs(line) for line in lines], invoice.total):
        assert stripe_chargeable(amount=amount, currency=currency), amount
    payment = invoice.payments.get()
    assert (payment.status, payment.amount) == (PaymentStatus.SUCCEEDED, invoice.total)
    assert ledger_check().ok


@pytest.mark.parametrize("currency", ["MGA", "KWD"])
def test_a_prorated_refund_at_cancellation_is_what_stripe_can_refund(
    stripe_gateway, browser, customer, currency
):
    subscription, _ = subscribed_to_basic(stripe_gateway, browser, customer, currency)
    with clock.frozen(MID_PERIOD):
        services.subscription_cancel(
            subscription=subscription,
            at_period_end=False,
            prorated_refund=True,
            idempotency_key=new_key(),
        )

    refund = Refund.objects.get()
    assert stripe_chargeable(amount=refund.amount, currency=currency), refund.amount
    assert refund.status == RefundStatus.SUCCEEDED
    assert ledger_check().ok
