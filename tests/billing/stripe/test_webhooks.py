"""``POST /webhooks/stripe/``: Stripe-Signature verified over the raw body (headers built by
Stripe's own library), each event stored once, answered at once, processed by the worker, and each
handler idempotent and independent of delivery order against localstripe's objects."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from typing import Any

import pytest
import stripe
from django.test import Client

from tests.billing.conftest import new_key
from tests.billing.stripe.conftest import (
    CARD_OK,
    CARD_REQUIRES_AUTHENTICATION,
    add_card,
    deliver,
    event_payload,
    header_for,
    to_dict,
)
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.inbound import inbox
from tollgate.billing.models import (
    Dispute,
    InboundEvent,
    Invoice,
    LedgerTransaction,
    PaymentAttempt,
    PaymentMethod,
    Refund,
)
from tollgate.billing.states import InvoiceStatus, PaymentStatus, RefundStatus
from tollgate.core import clock

pytestmark = pytest.mark.django_db
WEBHOOK = "/webhooks/stripe/"
START = dt.datetime(2025, 1, 31, 10, tzinfo=dt.UTC)
RENEWAL = dt.datetime(2025, 2, 28, 10, tzinfo=dt.UTC)


def post(client: Client, payload: bytes, header: str | None):
    headers = {} if header is None else {"Stripe-Signature": header}
    return client.post(WEBHOOK, payload, content_type="application/json", headers=headers)


@pytest.fixture
def secret(webhook_secrets: list[str]) -> str:
    return webhook_secrets[0]


# --- Signatures -----------------------------------------------------------------------------------


def test_a_valid_event_is_stored_once_and_answered_at_once(
    client, stripe_gateway, secret, django_capture_on_commit_callbacks
):
    payload = event_payload("invoice.created", {"id": "in_1", "object": "invoice"})
    header = header_for(payload, secret)
    # Stripe's own library accepts what the test builds.
    stripe.Webhook.construct_event(payload.decode(), header, secret)

    with django_capture_on_commit_callbacks(execute=True):
        first = post(client, payload, header)
    with django_capture_on_commit_callbacks(execute=True):
        again = post(client, payload, header)

    assert (first.status_code, first.json()) == (200, {"received": True, "duplicate": False})
    assert (again.status_code, again.json()) == (200, {"received": True, "duplicate": True})
    event = InboundEvent.objects.get()
    assert (event.gateway, event.type, event.status) == ("stripe", "invoice.created", "processed")


@pytest.mark.parametrize(
    "case",
    [
        "tampered body",
        "stale timestamp",
        "future timestamp",
        "wrong secret",
        "missing header",
        "malformed header",
        "no v1 signature",
        "not an event",
    ],
)
def test_an_event_that_fails_verification_is_refused_with_400_and_nothing_is_stored(
    client, stripe_gateway, secret, case
):
    payload = event_payload("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
    now = clock.now()
    header: str | None = header_for(payload, secret)
    if case == "tampered body":
        payload = payload.replace(b"pi_1", b"pi_2")
    elif case == "stale timestamp":
        header = header_for(payload, secret, at=now - dt.timedelta(seconds=301))
    elif case == "future timestamp":
        header = header_for(payload, secret, at=now + dt.timedelta(minutes=5))
    elif case == "wrong secret":
        header = header_for(payload, f"whsec_{secrets.token_urlsafe(32)}")
    elif case == "missing header":
        header = None
    elif case == "malformed header":
        header = "t=soon,v1=zz"
    elif case == "no v1 signature":
        header = header_for(payload, secret).replace("v1=", "v0=")
    elif case == "not an event":
        payload = json.dumps({"hello": "world"}).encode()
        header = header_for(payload, secret)

    response = post(client, payload, header)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "webhook_rejected"
    assert not InboundEvent.objects.exists()


def test_an_event_signed_within_the_tolerance_is_accepted(client, stripe_gateway, secret):
    payload = event_payload("invoice.created", {"id": "in_2", "object": "invoice"})
    header = header_for(payload, secret, at=clock.now() - dt.timedelta(seconds=290))
    assert post(client, payload, header).status_code == 200


def test_during_a_secret_roll_the_old_and_the_new_secret_are_both_accepted(
    client, stripe_gateway, settings
):
    old, new = (f"whsec_{secrets.token_urlsafe(32)}" for _ in range(2))
    settings.STRIPE_WEBHOOK_SECRETS = [new, old]
    for signing in ([old], [new], [old, new], [f"whsec_{secrets.token_urlsafe(32)}", new]):
        payload = event_payload("invoice.created", {"id": "in_3", "object": "invoice"})
        assert post(client, payload, header_for(payload, *signing)).status_code == 200
    assert InboundEvent.objects.count() == 4

    settings.STRIPE_WEBHOOK_SECRETS = [new]  # the roll is over
    payload = event_payload("invoice.created", {"id": "in_4", "object": "invoice"})
    assert post(client, payload, header_for(payload, old)).status_code == 400


def test_the_endpoint_is_open_only_while_stripe_is_the_gateway(client, settings, secret):
    settings.PAYMENT_GATEWAY = "sandbox"
    payload = event_payload("invoice.created", {"id": "in_5", "object": "invoice"})
    assert post(client, payload, header_for(payload, secret)).status_code == 404


def test_an_unknown_event_type_is_stored_and_acknowledged(
    client, stripe_gateway, secret, django_capture_on_commit_callbacks
):
    payload = event_payload("issuing_card.created", {"id": "ic_1", "object": "issuing.card"})
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, payload, header_for(payload, secret)).status_code == 200
    event = InboundEvent.objects.get()
    assert (event.status, event.last_error) == ("processed", "")


# --- Handlers ---------------------------------------------------------------------------------------


def setup_confirmed_at_stripe(gateway, browser, customer, number=CARD_OK):
    """The customer saved a card at Stripe; Tollgate's return page was never reached."""
    session = services.payment_method_setup_start(
        customer=customer, return_url="https://tollgate.test/billing/"
    )
    intent = gateway.setup_intent_get(reference=session.reference)
    browser.confirm_card_setup(intent.client_secret, number)
    return gateway.setup_intent_get(reference=session.reference)


def test_a_setup_event_attaches_the_card_once_however_often_it_arrives(
    stripe_gateway, browser, customer, secret
):
    intent = setup_confirmed_at_stripe(stripe_gateway, browser, customer)
    body = to_dict(intent)
    events = [deliver(event_payload("setup_intent.succeeded", body), secret) for _ in range(3)]

    assert [event.status for event in events] == ["processed"] * 3
    method = PaymentMethod.objects.get(customer=customer)
    assert (method.brand, method.last4, method.is_default) == ("visa", "4242", True)


def test_a_checkout_session_in_setup_mode_attaches_its_card(
    stripe_gateway, browser, customer, secret
):
    intent = setup_confirmed_at_stripe(stripe_gateway, browser, customer)
    session = {
        "id": "cs_1",
        "object": "checkout.session",
        "mode": "setup",
        "setup_intent": intent.id,
    }
    assert (
        deliver(event_payload("checkout.session.completed", session), secret).status == "processed"
    )
    assert PaymentMethod.objects.filter(customer=customer).count() == 1


@pytest.fixture
def awaiting_authentication(stripe_gateway, browser, customer, price):
    add_card(stripe_gateway, browser, customer, CARD_OK)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
    add_card(stripe_gateway, browser, customer, CARD_REQUIRES_AUTHENTICATION)
    with clock.frozen(RENEWAL):
        billing_run()
    payment = Invoice.objects.get(
        subscription=subscription, billing_reason="subscription_cycle"
    ).payments.get()
    assert payment.status == PaymentStatus.REQUIRES_ACTION
    return payment


def test_payment_succeeded_settles_the_payment_and_a_late_failure_changes_nothing(
    stripe_gateway, browser, awaiting_authentication, secret
):
    payment = awaiting_authentication
    intent = stripe_gateway.payment_intent_get(reference=payment.gateway_reference)
    browser.confirm_card_payment(intent.client_secret, success=True)
    succeeded = to_dict(stripe_gateway.payment_intent_get(reference=payment.gateway_reference))
    stale = {**to_dict(intent), "status": "requires_payment_method"}

    assert (
        deliver(event_payload("payment_intent.succeeded", succeeded), secret).status == "processed"
    )
    assert (
        deliver(event_payload("payment_intent.payment_failed", stale), secret).status == "processed"
    )

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.invoice.status == InvoiceStatus.PAID
    assert LedgerTransaction.objects.filter(payment=payment, kind="payment_captured").count() == 1


def test_a_success_event_stripe_cannot_confirm_yet_is_retried_until_it_can(
    stripe_gateway, browser, awaiting_authentication, secret, peer
):
    payment = awaiting_authentication
    intent = stripe_gateway.payment_intent_get(reference=payment.gateway_reference)
    browser.confirm_card_payment(intent.client_secret, success=True)
    succeeded = to_dict(stripe_gateway.payment_intent_get(reference=payment.gateway_reference))
    received = clock.now()
    with peer.lose("GET", "/v1/payment_intents/"):  # Stripe cannot be asked just now
        event = deliver(event_payload("payment_intent.succeeded", succeeded), secret)
    assert event.status == "failed"
    assert "still requires_action" in event.last_error
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REQUIRES_ACTION

    with clock.frozen(received + dt.timedelta(minutes=1)):
        assert inbox.events_sweep() == 1
    event.refresh_from_db()
    payment.refresh_from_db()
    assert (event.status, event.attempts) == ("processed", 2)
    assert payment.status == PaymentStatus.SUCCEEDED


def test_an_intent_tollgate_did_not_create_is_acknowledged_and_left_alone(stripe_gateway, secret):
    foreign = {
        "id": "pi_foreign",
        "object": "payment_intent",
        "metadata": {},
        "status": "succeeded",
    }
    assert deliver(event_payload("payment_intent.succeeded", foreign), secret).status == "processed"


def test_a_refund_event_settles_a_refund_whose_answer_was_lost(
    stripe_gateway, browser, customer, price, staff, peer, secret
):
    add_card(stripe_gateway, browser, customer, CARD_OK)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
    payment = subscription.invoices.get().payments.get()
    with peer.lose("POST", "/v1/refunds"):
        refund = services.refund_issue(
            payment=payment,
            amount=1000,
            reason=Refund.Reason.REQUESTED_BY_CUSTOMER,
            note="Goodwill",
            actor=staff,
            idempotency_key=new_key(),
        )
    assert refund.status == RefundStatus.PENDING
    [at_stripe] = stripe_gateway.client.v1.refunds.list(
        params={"payment_intent": payment.gateway_reference}
    ).data

    for event_type in ("refund.updated", "charge.refunded"):
        obj = (
            to_dict(at_stripe)
            if event_type == "refund.updated"
            else {
                "id": "ch_x",
                "object": "charge",
                "payment_intent": payment.gateway_reference,
            }
        )
        assert deliver(event_payload(event_type, obj), secret).status == "processed"

    refund.refresh_from_db()
    assert (refund.status, refund.gateway_reference) == (RefundStatus.SUCCEEDED, at_stripe.id)
    assert LedgerTransaction.objects.filter(refund=refund).count() == 1


def dispute_object(payment: PaymentAttempt, status: str) -> dict[str, Any]:
    # localstripe has no disputes API (/v1/disputes): the events carry the dispute as Stripe does.
    return {
        "id": "dp_1",
        "object": "dispute",
        "amount": payment.amount,
        "currency": payment.currency.lower(),
        "payment_intent": payment.gateway_reference,
        "charge": "ch_1",
        "reason": "fraudulent",
        "status": status,
        "evidence_details": {"due_by": int(time.time()) + 7 * 86400},
    }


@pytest.mark.parametrize("order", ["in order", "closed first"])
def test_a_dispute_is_recorded_audited_flagged_and_only_moves_forward(
    stripe_gateway, browser, customer, price, secret, order
):
    add_card(stripe_gateway, browser, customer, CARD_OK)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
    payment = subscription.invoices.get().payments.get()
    stream = [
        ("charge.dispute.created", "needs_response"),
        ("charge.dispute.updated", "under_review"),
        ("charge.dispute.closed", "lost"),
    ]
    if order == "closed first":
        stream.reverse()
    for event_type, status in stream:
        payload = event_payload(event_type, dispute_object(payment, status))
        assert deliver(payload, secret).status == "processed"

    dispute = Dispute.objects.get()
    assert (dispute.payment, dispute.status, dispute.needs_attention) == (payment, "lost", True)
    assert dispute.closed_at is not None
    assert (dispute.amount, dispute.currency, dispute.reason) == (2900, "USD", "fraudulent")
    assert AuditEvent.objects.filter(action="billing.dispute_opened").count() == 1


def test_a_card_updated_at_stripe_keeps_its_new_expiry(stripe_gateway, browser, customer, secret):
    method = add_card(stripe_gateway, browser, customer, CARD_OK)
    # The bank renewed the card (localstripe replaces the whole card hash on update).
    stripe_gateway.client.v1.payment_methods.update(
        method.gateway_token,
        params={"card": {"exp_month": 3, "exp_year": 2031, "last4": "4242", "brand": "visa"}},
    )
    current = to_dict(stripe_gateway.payment_method_get(token=method.gateway_token))
    for event_type in ("payment_method.automatically_updated", "payment_method.updated"):
        assert deliver(event_payload(event_type, current), secret).status == "processed"

    method.refresh_from_db()
    assert (method.exp_month, method.exp_year, method.last4, method.detached_at) == (
        3,
        2031,
        "4242",
        None,
    )
    assert AuditEvent.objects.filter(action="billing.payment_method_updated").count() == 1


def test_a_card_detached_at_stripe_is_detached_here(stripe_gateway, browser, customer, secret):
    method = add_card(stripe_gateway, browser, customer, CARD_OK)
    stripe_gateway.client.v1.payment_methods.detach(method.gateway_token)
    current = to_dict(stripe_gateway.payment_method_get(token=method.gateway_token))

    assert deliver(event_payload("payment_method.detached", current), secret).status == "processed"

    method.refresh_from_db()
    assert method.detached_at is not None
    assert method.is_default is False


def test_a_customer_deleted_at_stripe_is_unlinked_and_its_cards_forgotten(
    stripe_gateway, browser, customer, secret
):
    method = add_card(stripe_gateway, browser, customer, CARD_OK)
    customer.refresh_from_db()
    reference = customer.gateway_reference
    stripe_gateway.client.v1.customers.delete(reference)

    payload = event_payload("customer.deleted", {"id": reference, "object": "customer"})
    assert deliver(payload, secret).status == "processed"
    assert deliver(payload.replace(b'"evt_', b'"evt_again'), secret).status == "processed"

    customer.refresh_from_db()
    method.refresh_from_db()
    assert customer.gateway_reference == ""
    assert method.detached_at is not None
    # The next card setup creates a new Stripe customer.
    add_card(stripe_gateway, browser, customer, CARD_OK)
    customer.refresh_from_db()
    assert customer.gateway_reference.startswith("cus_")
    assert customer.gateway_reference != reference
