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
from tollgate.billing import services
from tollgate.billing.errors import PaymentMethodRequired, SubscriptionExists
from tollgate.billing.models import Invoice, LedgerEntry, PaymentAttempt, Subscription
from tollgate.billing.selectors import invoices_for, subscription_current
from tollgate.billing.states import InvoiceStatus, PaymentStatus, SubscriptionStatus
from tollgate.core import clock
from tollgate.core.errors import ValidationFailed

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2025, 1, 31, 10, 0, tzinfo=dt.UTC)


def test_trial_starts_without_a_card_and_anchors_billing_on_its_end(customer, price):
    with clock.frozen(NOW):
        subscription = services.subscription_start(
            customer=customer, price=price("starter"), idempotency_key=new_key()
        )
    trial_end = NOW + dt.timedelta(days=14)
    assert subscription.status == SubscriptionStatus.TRIALING
    assert (
        subscription.trial_end
        == trial_end
        == subscription.billing_anchor
        == subscription.current_period_end
    )
    assert subscription.current_period_start == NOW
    assert not Invoice.objects.exists()
    assert subscription_current(customer=customer) == subscription
    assert str(subscription).startswith("sub_")


def test_paid_start_charges_the_first_invoice_and_activates(
    customer, price, django_capture_on_commit_callbacks
):
    add_card(customer, CARD_OK)
    with clock.frozen(NOW), django_capture_on_commit_callbacks(execute=True):
        subscription = services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert subscription.billing_anchor == NOW
    assert subscription.current_period_end == dt.datetime(2025, 2, 28, 10, 0, tzinfo=dt.UTC)
    invoice = invoices_for(customer=customer).get()
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.number == f"{customer.invoice_prefix}-0001"
    assert (invoice.total, invoice.amount_paid, invoice.paid_at) == (2900, 2900, NOW)
    assert invoice.billing_reason == Invoice.BillingReason.SUBSCRIPTION_CREATE
    line = invoice.lines.get()
    assert (line.kind, line.amount, line.period_start, line.period_end) == (
        "plan_charge",
        2900,
        NOW,
        subscription.current_period_end,
    )
    payment = invoice.payments.get()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.idempotency_key == f"{invoice.public_id}-attempt-1"
    assert payment.off_session is False
    receipt = mail.outbox[-1]
    assert receipt.to == ["payer@example.org"]
    assert receipt.subject == f"Receipt for invoice {invoice.number} from Tollgate"
    assert "$29.00" in receipt.body
    assert "visa •••• 4242" in receipt.body
    balances = {
        entry.account: entry.amount
        for entry in LedgerEntry.objects.filter(account="gateway_clearing")
    }
    assert balances == {"gateway_clearing": 2900}


def test_starting_without_trial_needs_a_card_and_leaves_nothing_behind(customer, price):
    with pytest.raises(PaymentMethodRequired):
        services.subscription_start(
            customer=customer, price=price("starter"), trial=False, idempotency_key=new_key()
        )
    assert not Subscription.objects.exists()
    assert not Invoice.objects.exists()


def test_a_free_price_is_active_at_once_without_a_card_or_a_payment(customer, price):
    subscription = services.subscription_start(
        customer=customer, price=price("free"), idempotency_key=new_key()
    )
    assert subscription.status == SubscriptionStatus.ACTIVE
    invoice = Invoice.objects.get()
    assert (invoice.status, invoice.total, invoice.amount_paid) == (InvoiceStatus.PAID, 0, 0)
    assert not PaymentAttempt.objects.exists()
    assert not LedgerEntry.objects.exists()


def test_a_customer_has_one_live_subscription(customer, price):
    services.subscription_start(
        customer=customer, price=price("starter"), idempotency_key=new_key()
    )
    with pytest.raises(SubscriptionExists):
        services.subscription_start(
            customer=customer, price=price("starter"), idempotency_key=new_key()
        )
    assert Subscription.objects.count() == 1


def test_an_inactive_price_cannot_be_started(customer, price):
    retired = price("pro")
    retired.active = False
    retired.save(update_fields=["active"])
    with pytest.raises(ValidationFailed, match="no longer offered"):
        services.subscription_start(customer=customer, price=retired, idempotency_key=new_key())


def test_a_declined_first_payment_leaves_the_subscription_incomplete_until_a_new_card(
    customer, price, django_capture_on_commit_callbacks
):
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    with django_capture_on_commit_callbacks(execute=True):
        subscription = services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
    assert subscription.status == SubscriptionStatus.INCOMPLETE
    failed = PaymentAttempt.objects.get()
    assert (failed.status, failed.decline_code, failed.decline_kind) == (
        "failed",
        "generic_decline",
        "soft",
    )
    assert mail.outbox[-1].subject.startswith("Your payment for invoice")
    assert "Add or update your card" in mail.outbox[-1].body  # a first invoice is not retried

    add_card(customer, CARD_OK)  # a new card retries the open invoice at once

    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.ACTIVE
    second = PaymentAttempt.objects.get(attempt_number=2)
    assert second.status == PaymentStatus.SUCCEEDED
    assert Invoice.objects.get().status == InvoiceStatus.PAID


def test_a_yearly_start_on_leap_day_renews_on_february_28(customer, price):
    add_card(customer)
    leap_day = dt.datetime(2024, 2, 29, 8, tzinfo=dt.UTC)
    with clock.frozen(leap_day):
        subscription = services.subscription_start(
            customer=customer,
            price=price("starter", "year"),
            trial=False,
            idempotency_key=new_key(),
        )
    assert subscription.current_period_end == dt.datetime(2025, 2, 28, 8, tzinfo=dt.UTC)
    assert Invoice.objects.get().total == 9000


def test_authentication_on_the_first_payment_keeps_it_incomplete(customer, price):
    add_card(customer, CARD_REQUIRES_AUTHENTICATION)
    subscription = services.subscription_start(
        customer=customer, price=price("pro"), idempotency_key=new_key()
    )
    assert subscription.status == SubscriptionStatus.INCOMPLETE
    assert PaymentAttempt.objects.get().status == PaymentStatus.REQUIRES_ACTION
