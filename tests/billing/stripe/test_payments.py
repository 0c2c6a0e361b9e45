"""The billing engine's money flows through the Stripe gateway, against a real localstripe server:
card setup, first and off-session renewal charges, declines and dunning, authentication and its
recovery, refunds, and reconciliation settling what a lost webhook never told Tollgate."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail

from tests.billing.conftest import new_key
from tests.billing.stripe.conftest import (
    CARD_DECLINED,
    CARD_DECLINES_AFTER_ATTACH,
    CARD_OK,
    CARD_REQUIRES_AUTHENTICATION,
    add_card,
)
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.errors import PaymentMethodNotFound
from tollgate.billing.gateways.base import (
    ChargeRequest,
    ChargeStatus,
    DeclineKind,
    Gateway,
    GatewayRequestRefused,
)
from tollgate.billing.gateways.stripe.adapter import StripeGateway
from tollgate.billing.gateways.stripe.conf import KEY_METADATA
from tollgate.billing.gateways.stripe.links import action_link_read
from tollgate.billing.gateways.stripe.objects import key_of
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import (
    Invoice,
    LedgerTransaction,
    PaymentMethod,
    Refund,
    StripeRequest,
)
from tollgate.billing.reconciliation import reconciliation_run
from tollgate.billing.states import (
    InvoiceStatus,
    PaymentStatus,
    RefundStatus,
    SubscriptionStatus,
)
from tollgate.core import clock

pytestmark = pytest.mark.django_db
START = dt.datetime(2025, 1, 31, 10, tzinfo=dt.UTC)
RENEWAL = dt.datetime(2025, 2, 28, 10, tzinfo=dt.UTC)


def subscribe(customer, price):
    with clock.frozen(START):
        return services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )


def renew(moment=RENEWAL):
    with clock.frozen(moment):
        return billing_run()


def renewal_invoice(subscription) -> Invoice:
    return Invoice.objects.get(subscription=subscription, billing_reason="subscription_cycle")


def test_a_card_saved_with_4242_keeps_only_its_id_brand_last4_and_expiry(
    stripe_gateway, browser, customer
):
    method = add_card(stripe_gateway, browser, customer, CARD_OK)

    customer.refresh_from_db()
    assert customer.gateway == "stripe"
    assert customer.gateway_reference.startswith("cus_")
    assert method.gateway_token.startswith("pm_")
    assert (method.brand, method.last4, method.exp_month, method.exp_year, method.is_default) == (
        "visa",
        "4242",
        12,
        2099,
        True,
    )
    at_stripe = stripe_gateway.payment_method_get(token=method.gateway_token)
    assert at_stripe.customer == customer.gateway_reference


def test_the_stripe_customer_is_made_once_and_found_again_when_its_link_was_lost(
    stripe_gateway,
):
    first = stripe_gateway.customer_create(customer_id="cus_T1", email="same@example.org")
    assert stripe_gateway.customer_create(customer_id="cus_T1", email="same@example.org") == first
    other = stripe_gateway.customer_create(customer_id="cus_T2", email="same@example.org")
    assert other != first


def test_a_card_declined_at_setup_is_not_attached(stripe_gateway, browser, customer):
    session = services.payment_method_setup_start(
        customer=customer, return_url="https://tollgate.test/billing/"
    )
    intent = stripe_gateway.setup_intent_get(reference=session.reference)
    result = browser.confirm_card_setup(intent.client_secret, CARD_DECLINED)

    assert result["error"]["code"] == "card_declined"
    with pytest.raises(PaymentMethodNotFound):
        services.payment_method_attach(customer=customer, setup_reference=session.reference)
    assert not PaymentMethod.objects.exists()


def test_the_return_url_names_the_setup_intent(stripe_gateway):
    query = {"setup_intent": "seti_123", "redirect_status": "succeeded"}
    assert stripe_gateway.setup_return_reference(query=query) == "seti_123"
    assert stripe_gateway.setup_return_reference(query={}) == ""


def test_a_subscription_is_paid_with_a_payment_intent_carrying_the_attempt_key(
    stripe_gateway, browser, customer, price
):
    add_card(stripe_gateway, browser, customer, CARD_OK)
    subscription = subscribe(customer, price)

    assert subscription.status == SubscriptionStatus.ACTIVE
    payment = subscription.invoices.get().payments.get()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.gateway_reference.startswith("pi_")
    intent = stripe_gateway.payment_intent_get(reference=payment.gateway_reference)
    assert (intent.amount, intent.currency, intent.status) == (2900, "usd", "succeeded")
    assert intent.metadata[KEY_METADATA] == payment.idempotency_key
    assert ledger_check().ok


def test_an_off_session_renewal_is_charged_once_and_paid(
    stripe_gateway, browser, customer, price, django_capture_on_commit_callbacks
):
    add_card(stripe_gateway, browser, customer, CARD_OK)
    subscription = subscribe(customer, price)

    with django_capture_on_commit_callbacks(execute=True):
        result = renew()
    assert (result.renewed, result.charged) == (1, 1)
    invoice = renewal_invoice(subscription)
    payment = invoice.payments.get()
    assert (invoice.status, payment.status, payment.off_session) == ("paid", "succeeded", True)
    assert mail.outbox[-1].subject.startswith(f"Receipt for invoice {invoice.number}")
    assert renew(RENEWAL + dt.timedelta(hours=1)).handled == 0
    assert ledger_check().ok


def test_a_repeated_charge_request_with_the_same_key_returns_the_first_intent(
    stripe_gateway, browser, customer, price
):
    add_card(stripe_gateway, browser, customer, CARD_OK)
    payment = subscribe(customer, price).invoices.get().payments.get()
    customer.refresh_from_db()
    again = stripe_gateway.charge(
        request=ChargeRequest(
            customer_reference=customer.gateway_reference,
            payment_method_token=payment.payment_method.gateway_token,
            amount=payment.amount,
            currency=payment.currency,
            idempotency_key=payment.idempotency_key,
            off_session=False,
        )
    )
    assert (again.status, again.reference) == (ChargeStatus.SUCCEEDED, payment.gateway_reference)


def test_a_0341_card_is_declined_at_renewal_and_dunning_retries_on_schedule(
    stripe_gateway, browser, customer, price, django_capture_on_commit_callbacks
):
    add_card(stripe_gateway, browser, customer, CARD_OK)
    subscription = subscribe(customer, price)
    add_card(stripe_gateway, browser, customer, CARD_DECLINES_AFTER_ATTACH)

    with django_capture_on_commit_callbacks(execute=True):
        renew()
    subscription.refresh_from_db()
    invoice = renewal_invoice(subscription)
    payment = invoice.payments.get()
    assert subscription.status == SubscriptionStatus.PAST_DUE
    assert (payment.status, payment.decline_code, payment.decline_kind) == (
        PaymentStatus.FAILED,
        "card_declined",
        DeclineKind.SOFT,
    )
    assert payment.gateway_reference.startswith("pi_")
    assert invoice.next_payment_attempt_at == RENEWAL + dt.timedelta(days=1)
    assert "We will try again on March 1, 2025" in mail.outbox[-1].body

    assert renew(RENEWAL + dt.timedelta(days=1)).charged == 1
    invoice.refresh_from_db()
    assert invoice.payments.filter(status=PaymentStatus.FAILED).count() == 2
    assert invoice.next_payment_attempt_at == RENEWAL + dt.timedelta(days=3)

    add_card(stripe_gateway, browser, customer, CARD_OK)  # a new card pays at once
    invoice.refresh_from_db()
    subscription.refresh_from_db()
    assert (invoice.status, subscription.status) == (InvoiceStatus.PAID, SubscriptionStatus.ACTIVE)
    assert ledger_check().ok


def test_a_3155_renewal_needs_authentication_and_is_paid_once_the_customer_confirms(
    stripe_gateway, browser, customer, price, client, django_capture_on_commit_callbacks
):
    add_card(stripe_gateway, browser, customer, CARD_OK)
    subscription = subscribe(customer, price)
    add_card(stripe_gateway, browser, customer, CARD_REQUIRES_AUTHENTICATION)

    with django_capture_on_commit_callbacks(execute=True):
        renew()
    payment = renewal_invoice(subscription).payments.get()
    assert payment.status == PaymentStatus.REQUIRES_ACTION
    assert payment.action_url.startswith("http://127.0.0.1:8000/stripe/authenticate/")
    assert payment.action_url in mail.outbox[-1].body
    token = payment.action_url.rstrip("/").rsplit("/", 1)[1]
    assert action_link_read(token) == payment.gateway_reference

    page = client.get(f"/stripe/authenticate/{token}/")
    assert page.status_code == 200
    assert b"Confirm your payment" in page.content
    intent = stripe_gateway.payment_intent_get(reference=payment.gateway_reference)
    assert intent.client_secret.encode() in page.content
    assert page["Cache-Control"] == "no-store"

    browser.confirm_card_payment(intent.client_secret, success=True)
    with django_capture_on_commit_callbacks(execute=True):
        done = client.get(f"/stripe/authenticate/{token}/done/")
    assert b"Payment confirmed" in done.content
    payment.refresh_from_db()
    subscription.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.invoice.status == InvoiceStatus.PAID
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert ledger_check().ok


def test_a_failed_authentication_fails_the_payment_softly(
    stripe_gateway, browser, customer, price, client
):
    add_card(stripe_gateway, browser, customer, CARD_OK)
    subscription = subscribe(customer, price)
    add_card(stripe_gateway, browser, customer, CARD_REQUIRES_AUTHENTICATION)
    renew()
    payment = renewal_invoice(subscription).payments.get()
    intent = stripe_gateway.payment_intent_get(reference=payment.gateway_reference)

    browser.confirm_card_payment(intent.client_secret, success=False)
    payment = services.payment_reconcile(payment=payment)

    assert (payment.status, payment.decline_code, payment.decline_kind) == (
        PaymentStatus.FAILED,
        "payment_intent_authentication_failure",
        DeclineKind.SOFT,
    )


def test_a_partial_then_a_full_refund_are_refunded_at_stripe_and_posted(
    stripe_gateway, browser, customer, price, staff
):
    add_card(stripe_gateway, browser, customer, CARD_OK)
    payment = subscribe(customer, price).invoices.get().payments.get()

    partial = services.refund_issue(
        payment=payment,
        amount=900,
        reason=Refund.Reason.REQUESTED_BY_CUSTOMER,
        note="Goodwill",
        actor=staff,
        idempotency_key=new_key(),
    )
    rest = services.refund_issue(
        payment=payment,
        amount=2000,
        reason=Refund.Reason.REQUESTED_BY_CUSTOMER,
        note="Goodwill",
        actor=staff,
        idempotency_key=new_key(),
    )

    assert (partial.status, rest.status) == (RefundStatus.SUCCEEDED, RefundStatus.SUCCEEDED)
    assert partial.gateway_reference.startswith("re_")
    at_stripe = stripe_gateway.client.v1.refunds.list(
        params={"payment_intent": payment.gateway_reference}
    )
    assert sorted(refund.amount for refund in at_stripe.data) == [900, 2000]
    assert {refund.metadata[KEY_METADATA] for refund in at_stripe.data} == {
        partial.public_id,
        rest.public_id,
    }
    payment.refresh_from_db()
    assert payment.amount_refunded == 2900
    assert (
        LedgerTransaction.objects.filter(kind=LedgerTransaction.Kind.REFUND_SUCCEEDED).count() == 2
    )
    assert ledger_check().ok
    assert services.refund_reconcile(refund=partial).status == RefundStatus.SUCCEEDED


def test_reconciliation_settles_a_payment_whose_webhook_never_arrived(
    stripe_gateway, browser, customer, price
):
    add_card(stripe_gateway, browser, customer, CARD_OK)
    subscription = subscribe(customer, price)
    add_card(stripe_gateway, browser, customer, CARD_REQUIRES_AUTHENTICATION)
    renew()
    payment = renewal_invoice(subscription).payments.get()
    intent = stripe_gateway.payment_intent_get(reference=payment.gateway_reference)
    # The customer confirms at Stripe; the payment_intent.succeeded webhook is lost on the way.
    browser.confirm_card_payment(intent.client_secret, success=True)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REQUIRES_ACTION

    now = clock.now()
    run = reconciliation_run(since=now - dt.timedelta(hours=1), until=now + dt.timedelta(minutes=1))

    payment.refresh_from_db()
    subscription.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert run.status == "completed", run.error
    assert [heal["id"] for heal in run.heals] == [payment.public_id]
    assert run.mismatches == []
    again = reconciliation_run(
        since=now - dt.timedelta(hours=1), until=now + dt.timedelta(minutes=1)
    )
    assert (again.healed_count, again.mismatched_count) == (0, 0)
    assert ledger_check().ok
    # The listing carries what Stripe's balance moved (its balance transactions): the charges in full.
    listed = stripe_gateway.transactions_list(
        since=now - dt.timedelta(hours=1), until=now + dt.timedelta(minutes=1)
    )
    succeeded = [item for item in listed if item.status == "succeeded"]
    assert succeeded
    assert all(
        (item.settled_amount, item.settled_currency) == (item.amount, item.currency)
        for item in succeeded
    )


def intents_with_key(gateway, key: str) -> list:
    listed = gateway.client.v1.payment_intents.list(params={"limit": 100})
    return [intent for intent in listed.auto_paging_iter() if key_of(intent) == key]


def test_a_renewal_whose_answer_was_lost_is_unknown_then_settled_by_asking_stripe(
    stripe_gateway, browser, customer, price, peer
):
    add_card(stripe_gateway, browser, customer, CARD_OK)
    subscription = subscribe(customer, price)

    with peer.lose("POST", "/v1/payment_intents"):
        renew()
    payment = renewal_invoice(subscription).payments.get()
    assert payment.status == PaymentStatus.UNKNOWN
    assert payment.gateway_reference == ""

    with clock.frozen(RENEWAL + dt.timedelta(minutes=5)):
        billing_run()  # its first step asks the gateway about outcomes left unknown
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.gateway_reference.startswith("pi_")
    assert len(intents_with_key(stripe_gateway, payment.idempotency_key)) == 1
    assert payment.invoice.status == InvoiceStatus.PAID
    assert ledger_check().ok


def test_a_charge_that_never_reached_stripe_is_reported_as_never_received(
    stripe_gateway, browser, customer, price, peer
):
    add_card(stripe_gateway, browser, customer, CARD_OK)
    payment = subscribe(customer, price).invoices.get().payments.get()
    # A second attempt whose request was recorded but never left (the worker died first).
    StripeRequest.objects.create(
        idempotency_key="inv_lost-attempt-1",
        kind=StripeRequest.Kind.PAYMENT_INTENT,
        customer_reference=payment.invoice.customer.gateway_reference,
    )
    assert stripe_gateway.charge_lookup(idempotency_key="inv_lost-attempt-1") is None
    assert stripe_gateway.charge_lookup(idempotency_key="inv_never-attempt-1") is None


def test_reconciliation_settles_a_refund_whose_answer_was_lost(
    stripe_gateway, browser, customer, price, staff, peer
):
    add_card(stripe_gateway, browser, customer, CARD_OK)
    payment = subscribe(customer, price).invoices.get().payments.get()
    with peer.lose("POST", "/v1/refunds"):
        refund = services.refund_issue(
            payment=payment,
            amount=500,
            reason=Refund.Reason.REQUESTED_BY_CUSTOMER,
            note="Goodwill",
            actor=staff,
            idempotency_key=new_key(),
        )
    assert refund.status == RefundStatus.PENDING

    now = clock.now()
    run = reconciliation_run(since=now - dt.timedelta(hours=1), until=now + dt.timedelta(minutes=1))

    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert refund.gateway_reference.startswith("re_")
    assert [heal["id"] for heal in run.heals] == [refund.public_id]
    at_stripe = stripe_gateway.client.v1.refunds.list(
        params={"payment_intent": payment.gateway_reference}
    )
    assert [item.amount for item in at_stripe.data] == [500]
    assert ledger_check().ok


def test_the_stripe_adapter_implements_every_method_of_the_gateway_protocol():
    wanted = {name for name in vars(Gateway) if not name.startswith("_")} - {"name"}
    missing = {name for name in wanted if not callable(getattr(StripeGateway, name, None))}
    assert missing == set()


def test_an_expired_authentication_cancels_the_intent_so_an_old_link_cannot_pay(
    stripe_gateway, browser, customer, price, client
):
    add_card(stripe_gateway, browser, customer, CARD_OK)
    subscription = subscribe(customer, price)
    add_card(stripe_gateway, browser, customer, CARD_REQUIRES_AUTHENTICATION)
    renew()
    payment = renewal_invoice(subscription).payments.get()
    token = payment.action_url.rstrip("/").rsplit("/", 1)[1]

    payment = services.payment_action_expire(payment=payment)

    assert (payment.status, payment.decline_code) == (
        PaymentStatus.FAILED,
        services.ACTION_EXPIRED,
    )
    intent = stripe_gateway.payment_intent_get(reference=payment.gateway_reference)
    assert intent.status == "canceled"
    result = browser.confirm_card_payment(intent.client_secret, success=True)
    assert "error" in result  # Stripe refuses to confirm a canceled intent
    page = client.get(f"/stripe/authenticate/{token}/", follow=True)
    assert b"Payment not confirmed" in page.content


def test_an_authentication_completed_just_before_expiry_is_recorded_as_paid(
    stripe_gateway, browser, customer, price
):
    add_card(stripe_gateway, browser, customer, CARD_OK)
    subscription = subscribe(customer, price)
    add_card(stripe_gateway, browser, customer, CARD_REQUIRES_AUTHENTICATION)
    renew()
    payment = renewal_invoice(subscription).payments.get()
    intent = stripe_gateway.payment_intent_get(reference=payment.gateway_reference)
    browser.confirm_card_payment(intent.client_secret, success=True)

    payment = services.payment_action_expire(payment=payment)

    assert payment.status == PaymentStatus.SUCCEEDED
    assert stripe_gateway.charge_cancel(idempotency_key=payment.idempotency_key).status == (
        ChargeStatus.SUCCEEDED
    )


def test_a_batch_of_renewals_is_charged_concurrently_each_under_its_own_key(
    stripe_gateway, browser, make_customer, price
):
    cards = {
        "ok@example.org": CARD_OK,
        "declines@example.org": CARD_DECLINES_AFTER_ATTACH,
        "authenticates@example.org": CARD_REQUIRES_AUTHENTICATION,
    }
    subscriptions = {}
    for email, number in cards.items():
        customer = make_customer(email)
        add_card(stripe_gateway, browser, customer, CARD_OK)
        subscriptions[email] = subscribe(customer, price)
        add_card(stripe_gateway, browser, customer, number)

    result = renew()

    assert (result.renewed, result.charged) == (3, 3)
    payments = {
        email: renewal_invoice(subscription).payments.get()
        for email, subscription in subscriptions.items()
    }
    assert {email: payment.status for email, payment in payments.items()} == {
        "ok@example.org": PaymentStatus.SUCCEEDED,
        "declines@example.org": PaymentStatus.FAILED,
        "authenticates@example.org": PaymentStatus.REQUIRES_ACTION,
    }
    for payment in payments.values():
        assert len(intents_with_key(stripe_gateway, payment.idempotency_key)) == 1
        record = StripeRequest.objects.get(idempotency_key=payment.idempotency_key)
        assert record.object_id == payment.gateway_reference
    assert ledger_check().ok


def test_a_charge_with_a_nonpositive_amount_is_refused_without_reaching_stripe(stripe_gateway):
    request = ChargeRequest(
        customer_reference="cus_x",
        payment_method_token="pm_x",
        amount=0,
        currency="USD",
        idempotency_key="inv_zero-attempt-1",
        off_session=True,
    )
    [answer] = stripe_gateway.charge_many(requests=[request])
    assert isinstance(answer, GatewayRequestRefused)
    assert not StripeRequest.objects.exists()
