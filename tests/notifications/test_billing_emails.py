"""Billing emails sent on events, rendered through the real services and read as delivered."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail

from tests.billing.conftest import (
    CARD_DECLINES_AFTER_ATTACH,
    CARD_OK,
    CARD_REQUIRES_AUTHENTICATION,
    add_card,
    new_key,
)
from tests.notifications.emails import assert_transactional, html_of, sent
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.models import Invoice, PaymentAttempt, Refund
from tollgate.core import clock

pytestmark = pytest.mark.django_db
SITE = "https://acme.test"
START = dt.datetime(2025, 1, 10, 9, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _acme(settings):
    settings.SITE_URL = SITE
    settings.TOLLGATE_BRAND = {
        **settings.TOLLGATE_BRAND,
        "name": "Acme",
        "primary_color": "#123456",
        "support_email": "help@acme.test",
    }


@pytest.fixture
def delivered(django_capture_on_commit_callbacks):
    """Wraps work whose emails the worker delivers after its commits."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def start(customer, price, delivered, moment=START, **options):
    with delivered(), clock.frozen(moment):
        return services.subscription_start(
            customer=customer, price=price, idempotency_key=new_key(), **options
        )


def both(message):
    return (message.body, html_of(message))


def invoice_url(invoice):
    return f"{SITE}/billing/invoices/{invoice.public_id}/"


def test_a_trial_is_confirmed_with_its_end_the_price_after_it_and_a_link_to_add_a_card(
    customer, price, delivered
):
    start(customer, price("starter"), delivered)
    message = sent("Your Starter trial has started")
    assert message.to == ["payer@example.org"]
    for body in both(message):
        assert "January 24, 2025" in body
        assert "$9.00" in body
        assert "per month" in body
        assert f"{SITE}/billing/payment-method/" in body
        assert f"{SITE}/billing/" in body
    html = html_of(message)
    assert "#123456" in html
    assert "Acme" in html
    assert "help@acme.test" in message.body
    assert_transactional(message)


def test_a_paid_start_is_confirmed_and_receipted_with_a_link_to_its_invoice(
    customer, price, delivered
):
    card = add_card(customer, CARD_OK)
    start(customer, price("pro"), delivered)
    invoice = Invoice.objects.get()
    confirmation = sent("Your Pro subscription is active")
    for body in both(confirmation):
        assert "$29.00" in body
        assert "February 10, 2025" in body
        assert str(card) in body
    receipt = sent(f"Receipt for invoice {invoice.number} from Acme")
    for body in both(receipt):
        assert invoice.number in body
        assert "$29.00" in body
        assert str(card) in body
        assert invoice_url(invoice) in body
    assert_transactional(confirmation)
    assert_transactional(receipt)


def test_a_trial_that_converts_is_not_confirmed_a_second_time(customer, price, delivered):
    add_card(customer, CARD_OK)
    subscription = start(customer, price("starter"), delivered)
    with delivered(), clock.frozen(subscription.current_period_end):
        billing_run()
    subscription.refresh_from_db()
    assert subscription.status == "active"
    assert [m.subject for m in mail.outbox if "trial has started" in m.subject]
    assert not [m for m in mail.outbox if "subscription is active" in m.subject]
    invoice = Invoice.objects.get(status="paid")
    assert invoice_url(invoice) in sent("Receipt for invoice").body


def test_a_free_plan_is_confirmed_without_a_charge(customer, price, delivered):
    start(customer, price("free"), delivered)
    message = sent("Your Free subscription is active")
    for body in both(message):
        assert "nothing will be charged" in body
    assert_transactional(message)


def test_a_failed_renewal_links_to_the_card_page_and_the_invoice_and_names_the_retry_date(
    customer, price, delivered
):
    add_card(customer, CARD_OK)
    subscription = start(customer, price("pro"), delivered)
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    with delivered(), clock.frozen(subscription.current_period_end):
        billing_run()
    invoice = Invoice.objects.get(billing_reason="subscription_cycle")
    message = sent(f"Your payment for invoice {invoice.number} did not go through")
    for body in both(message):
        assert "$29.00" in body
        assert "February 11, 2025" in body  # the first retry, a day after the renewal
        assert f"{SITE}/billing/payment-method/" in body
        assert invoice_url(invoice) in body
    assert 'href="https://acme.test/billing/payment-method/"' in html_of(message)
    assert_transactional(message)


def test_a_payment_needing_authentication_links_to_the_bank_step_and_the_invoice(
    customer, price, delivered
):
    add_card(customer, CARD_REQUIRES_AUTHENTICATION)
    start(customer, price("pro"), delivered)
    payment = PaymentAttempt.objects.get()
    assert payment.status == "requires_action"
    invoice = payment.invoice
    message = sent(f"Confirm your payment for invoice {invoice.number}")
    assert payment.action_url
    for body in both(message):
        assert "$29.00" in body
        assert payment.action_url.replace("&", "&amp;") in body or payment.action_url in body
        assert invoice_url(invoice) in body
    assert_transactional(message)


def test_a_cancellation_at_period_end_names_the_end_and_links_to_resume(customer, price, delivered):
    add_card(customer, CARD_OK)
    subscription = start(customer, price("pro"), delivered)
    with delivered(), clock.frozen(START + dt.timedelta(days=2)):
        services.subscription_cancel(
            subscription=subscription, at_period_end=True, idempotency_key=new_key()
        )
    message = sent("Your Pro subscription will end on February 10, 2025")
    for body in both(message):
        assert "February 10, 2025" in body
        assert f"{SITE}/billing/" in body
    assert_transactional(message)


def test_a_cancellation_now_with_a_refund_names_the_amount_and_links_to_subscribe_again(
    customer, price, delivered
):
    add_card(customer, CARD_OK)
    subscription = start(customer, price("pro"), delivered)
    with delivered(), clock.frozen(START + dt.timedelta(days=3, hours=2)):
        services.subscription_cancel(
            subscription=subscription,
            at_period_end=False,
            prorated_refund=True,
            idempotency_key=new_key(),
        )
    refund = Refund.objects.get()
    message = sent("Your Pro subscription has been canceled")
    refunded = f"${refund.amount // 100}.{refund.amount % 100:02d}"
    for body in both(message):
        assert "January 13, 2025" in body
        assert refunded in body
        assert f"{SITE}/billing/" in body
    assert_transactional(message)
    issued = sent(f"Your refund of {refunded} from Acme")
    for body in both(issued):
        assert invoice_url(refund.payment.invoice) in body


def test_a_partial_refund_by_staff_names_the_amount_and_links_to_the_invoice(
    customer, price, staff, delivered
):
    add_card(customer, CARD_OK)
    start(customer, price("pro"), delivered)
    payment = PaymentAttempt.objects.get()
    with delivered():
        services.refund_issue(
            payment=payment,
            amount=550,
            reason=Refund.Reason.REQUESTED_BY_CUSTOMER,
            note="goodwill",
            actor=staff,
            idempotency_key=new_key(),
        )
    message = sent("Your refund of $5.50 from Acme")
    for body in both(message):
        assert "$5.50" in body
        assert payment.invoice.number in body
        assert invoice_url(payment.invoice) in body
    assert_transactional(message)
