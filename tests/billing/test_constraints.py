"""The database is the last line of defence: these writes bypass the services on purpose."""

import datetime as dt

import pytest
from django.db import IntegrityError, transaction

from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.billing import services
from tollgate.billing.locks import lock_customer
from tollgate.billing.models import Invoice, PaymentAttempt, PaymentMethod, Subscription
from tollgate.billing.states import SubscriptionStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def paid(customer, price):
    add_card(customer, CARD_OK)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    return PaymentAttempt.objects.get()


def test_a_second_live_subscription_is_refused_but_an_ended_one_may_coexist(paid, price):
    live = Subscription.objects.get()
    fields = {
        "customer": live.customer,
        "price": price("starter"),
        "billing_anchor": live.billing_anchor,
        "current_period_start": live.current_period_start,
        "current_period_end": live.current_period_end,
    }
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.create(status=SubscriptionStatus.ACTIVE, **fields)
    Subscription.objects.create(
        status=SubscriptionStatus.CANCELED, ended_at=live.created_at, **fields
    )


@pytest.mark.parametrize(
    "change",
    [
        {"status": "canceled"},  # ended without ended_at
        {"status": "trialing"},  # trialing without trial_end
        {"status": "dormant"},
        {"current_period_end": dt.datetime(2000, 1, 1, tzinfo=dt.UTC)},
    ],
)
def test_subscription_rows_must_be_coherent(paid, change):
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.filter(pk=Subscription.objects.get().pk).update(**change)


def test_a_subscription_cannot_schedule_its_own_price(paid):
    subscription = Subscription.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.filter(pk=subscription.pk).update(scheduled_price=subscription.price)


def test_a_second_live_payment_for_an_invoice_is_refused(paid):
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentAttempt.objects.create(
            invoice=paid.invoice,
            attempt_number=2,
            idempotency_key="x",
            amount=1,
            currency="USD",
            gateway="sandbox",
            off_session=True,
        )


@pytest.mark.parametrize(
    "change",
    [
        {"amount_refunded": 2901},
        {"amount_refunded": -1},
        {"amount": 0},
        {"currency": "usd"},
        {"status": "failed"},  # failed without a decline code, and refunds only when captured
    ],
)
def test_payment_amounts_and_states_are_guarded(paid, change):
    if change == {"status": "failed"}:
        PaymentAttempt.objects.filter(pk=paid.pk).update(amount_refunded=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentAttempt.objects.filter(pk=paid.pk).update(**change)


@pytest.mark.parametrize(
    "change",
    [
        {"amount_paid": 3000},
        {"total": -1, "amount_paid": 0},
        {"status": "draft"},  # numbered drafts do not exist
        {"status": "paid", "paid_at": None},
        {"number": None},
    ],
)
def test_invoice_rows_must_be_coherent(paid, change):
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=paid.invoice_id).update(**change)


def test_invoice_numbers_are_unique(paid, customer):
    from tollgate.billing.services import LineSpec

    draft = services.invoice_draft_create(
        customer=customer,
        currency="USD",
        lines=[LineSpec(kind="plan_charge", description="x", amount=1)],
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=draft.pk).update(
            status="open", number=paid.invoice.number, finalized_at=paid.created_at
        )


def test_a_customer_has_one_default_card(paid, customer):
    method = PaymentMethod.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentMethod.objects.create(
            customer=customer,
            gateway="sandbox",
            gateway_token="t2",
            brand="visa",
            last4="1111",
            exp_month=1,
            exp_year=2090,
            is_default=True,
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentMethod.objects.filter(pk=method.pk).update(last4="12a4")


def test_a_customer_needs_an_opening_account_or_an_organisation(customer):
    # Without its opening account (it left a team that keeps the customer), the organisation holds it.
    type(customer).objects.filter(pk=customer.pk).update(user=None)
    with pytest.raises(IntegrityError), transaction.atomic():
        type(customer).objects.filter(pk=customer.pk).update(organisation=None)


@pytest.mark.django_db(transaction=True)
def test_locks_are_refused_outside_a_transaction(customer):
    with pytest.raises(RuntimeError, match="inside a transaction"):
        lock_customer(customer)
