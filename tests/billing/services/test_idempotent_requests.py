"""The billing services that move money, keyed: once per key, the first result on a repeat."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.billing.conftest import (
    CARD_INSUFFICIENT_FUNDS,
    CARD_OK,
    CARD_TIMES_OUT,
    add_card,
    new_key,
)
from tollgate.billing import services
from tollgate.billing.errors import PaymentMethodRequired, SubscriptionExists
from tollgate.billing.gateways.sandbox.models import SandboxCharge
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Invoice, PaymentAttempt, Subscription
from tollgate.billing.services.subscriptions import _subscription_start
from tollgate.billing.states import InvoiceStatus, PaymentStatus, SubscriptionStatus
from tollgate.core import clock
from tollgate.core.errors import IdempotencyKeyInProgress, IdempotencyKeyReused
from tollgate.core.idempotency import (
    IdempotencyClaim,
    form_token_issue,
    form_token_redeem,
    idempotency_claim,
)
from tollgate.core.models import IdempotencyRecord

pytestmark = pytest.mark.django_db
START = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def start(customer, price, key, **options):
    return services.subscription_start(
        customer=customer, price=price, idempotency_key=key, **options
    )


# --- Checkout ---------------------------------------------------------------------------------------
def test_a_repeated_checkout_returns_the_first_subscription_and_charges_once(customer, price):
    add_card(customer, CARD_OK)
    first = start(customer, price("pro"), "checkout-1")
    again = start(customer, price("pro"), "checkout-1")
    assert again == first
    assert again.status == SubscriptionStatus.ACTIVE
    assert Subscription.objects.count() == Invoice.objects.count() == 1
    assert PaymentAttempt.objects.count() == SandboxCharge.objects.count() == 1
    stored = IdempotencyRecord.objects.get()
    assert (stored.scope, stored.key, stored.operation, stored.state) == (
        customer.public_id,
        "checkout-1",
        "subscription_start",
        "completed",
    )
    assert stored.response == {"object": "billing.subscription", "id": first.public_id}


def test_the_same_checkout_key_for_another_plan_is_refused(customer, price):
    add_card(customer, CARD_OK)
    start(customer, price("pro"), "checkout-1")
    with pytest.raises(IdempotencyKeyReused) as refused:
        start(customer, price("starter"), "checkout-1")
    assert refused.value.status == 422
    with pytest.raises(IdempotencyKeyReused):
        start(customer, price("pro"), "checkout-1", trial=False)


def test_a_new_key_for_a_second_checkout_is_refused_by_the_one_live_subscription(customer, price):
    add_card(customer, CARD_OK)
    start(customer, price("pro"), "checkout-1")
    with pytest.raises(SubscriptionExists):
        start(customer, price("pro"), "checkout-2")
    assert IdempotencyRecord.objects.get(key="checkout-2").state == "failed"
    assert SandboxCharge.objects.count() == 1


def test_a_checkout_that_failed_can_be_sent_again_with_the_same_key(customer, price):
    with pytest.raises(PaymentMethodRequired):
        start(customer, price("pro"), "checkout-1")
    stored = IdempotencyRecord.objects.get()
    assert (stored.state, stored.error_code) == ("failed", "payment_method_required")
    add_card(customer, CARD_OK)
    subscription = start(customer, price("pro"), "checkout-1")
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert IdempotencyRecord.objects.get().state == "completed"


def test_a_checkout_while_the_same_one_is_in_progress_is_a_conflict(customer, price):
    add_card(customer, CARD_OK)
    # Another request holds the key (its claim committed, its work under way).
    held = idempotency_claim(
        scope=customer.public_id,
        key="checkout-1",
        operation="subscription_start",
        parameters={"price": price("pro").public_id, "trial": True},
    )
    assert isinstance(held, IdempotencyClaim)
    with pytest.raises(IdempotencyKeyInProgress) as refused:
        start(customer, price("pro"), "checkout-1")
    assert refused.value.status == 409
    assert not Subscription.objects.exists()


def test_a_checkout_whose_worker_died_after_creating_it_returns_it_after_the_lease(customer, price):
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        held = idempotency_claim(
            scope=customer.public_id,
            key="checkout-1",
            operation="subscription_start",
            parameters={"price": price("pro").public_id, "trial": True},
        )
        # The worker's work, up to its death: the subscription and its first charge committed, the
        # request never completed.
        created = _subscription_start(
            customer=customer, price=price("pro"), trial=True, actor=None, claim=held
        )
    with clock.frozen(START + dt.timedelta(minutes=1)), pytest.raises(IdempotencyKeyInProgress):
        start(customer, price("pro"), "checkout-1")
    with clock.frozen(START + dt.timedelta(minutes=6)):
        assert start(customer, price("pro"), "checkout-1") == created
    assert SandboxCharge.objects.count() == 1
    assert IdempotencyRecord.objects.get().state == "completed"


def test_a_checkout_from_a_form_submitted_twice_makes_one_subscription(customer, price):
    add_card(customer, CARD_OK)
    owner = customer.user.public_id
    token = form_token_issue(purpose="subscription_start", owner=owner)
    results = [
        start(
            customer,
            price("pro"),
            form_token_redeem(token=token, purpose="subscription_start", owner=owner),
        )
        for _ in range(2)
    ]
    assert results[0] == results[1]
    assert SandboxCharge.objects.count() == 1


def test_an_idempotency_record_is_kept_per_customer(make_customer, price):
    first, second = make_customer("a@example.org"), make_customer("b@example.org")
    for customer in (first, second):
        add_card(customer, CARD_OK)
        start(customer, price("pro"), "same-key")
    assert Subscription.objects.count() == 2
    assert SandboxCharge.objects.count() == 2


# --- Paying an invoice on demand ------------------------------------------------------------------------
@pytest.fixture
def declined_invoice(customer, price):
    add_card(customer, CARD_INSUFFICIENT_FUNDS)
    start(customer, price("pro"), new_key())
    invoice = Invoice.objects.get()
    assert invoice.status == InvoiceStatus.OPEN
    return invoice


def test_a_repeated_payment_request_returns_the_first_attempt_without_charging_again(
    declined_invoice,
):
    first = services.invoice_pay(invoice=declined_invoice, off_session=False, idempotency_key="p1")
    again = services.invoice_pay(invoice=declined_invoice, off_session=False, idempotency_key="p1")
    assert again == first
    assert again.status == PaymentStatus.FAILED
    assert declined_invoice.payments.count() == 2  # the checkout's and this one, nothing more
    assert SandboxCharge.objects.count() == 2
    with pytest.raises(IdempotencyKeyReused):
        services.invoice_pay(invoice=declined_invoice, off_session=True, idempotency_key="p1")
    third = services.invoice_pay(invoice=declined_invoice, off_session=False, idempotency_key="p2")
    assert third.attempt_number == 3


def test_a_payment_request_whose_outcome_is_unknown_returns_the_attempt_on_a_repeat(
    declined_invoice, customer
):
    from tests.billing.services.test_payments import switch_card

    switch_card(customer, CARD_TIMES_OUT)
    first = services.invoice_pay(invoice=declined_invoice, off_session=False, idempotency_key="p1")
    assert first.status == PaymentStatus.UNKNOWN
    again = services.invoice_pay(invoice=declined_invoice, off_session=False, idempotency_key="p1")
    assert again == first
    assert SandboxCharge.objects.filter(idempotency_key=first.idempotency_key).count() == 1


# --- Plan changes -------------------------------------------------------------------------------------
def test_a_repeated_upgrade_charges_the_difference_once(customer, price):
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        subscription = start(customer, price("starter"), new_key(), trial=False)
    with clock.frozen(START + dt.timedelta(days=10)):
        for _ in range(2):
            changed = services.subscription_change_price(
                subscription=subscription, price=price("pro"), idempotency_key="upgrade-1"
            )
            assert changed.price == price("pro")
        with pytest.raises(IdempotencyKeyReused):
            services.subscription_change_price(
                subscription=subscription,
                price=price("starter", "year"),
                idempotency_key="upgrade-1",
            )
    update = Invoice.objects.get(billing_reason="subscription_update")
    assert update.status == InvoiceStatus.PAID
    assert SandboxCharge.objects.count() == 2  # the checkout and the upgrade
    assert ledger_check().ok
