"""How Stripe's events may really arrive: the same one several times at once, a whole stream in any
order, and a worker that dies in the middle of one. Each is processed once, to the same state."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from tests import concurrency
from tests.billing.conftest import new_key
from tests.billing.stripe.conftest import (
    CARD_OK,
    CARD_REQUIRES_AUTHENTICATION,
    PUBLISHABLE_KEY,
    SECRET_KEY,
    add_card,
    event_payload,
    header_for,
    to_dict,
)
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.inbound import inbox
from tollgate.billing.models import (
    Customer,
    Dispute,
    InboundEvent,
    Invoice,
    LedgerTransaction,
    PaymentAttempt,
    Refund,
)
from tollgate.billing.states import PaymentStatus
from tollgate.core import clock

START = dt.datetime(2025, 1, 31, 10, tzinfo=dt.UTC)
RENEWAL = dt.datetime(2025, 2, 28, 10, tzinfo=dt.UTC)
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent workers need PostgreSQL (SQLite serializes all writers)",
)


def awaiting_authentication(gateway, browser, customer, price) -> PaymentAttempt:
    """A renewal with a 3-D Secure card: the payment waits for the customer."""
    add_card(gateway, browser, customer, CARD_OK)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
    add_card(gateway, browser, customer, CARD_REQUIRES_AUTHENTICATION)
    with clock.frozen(RENEWAL):
        billing_run()
    payment = Invoice.objects.get(
        subscription=subscription, billing_reason="subscription_cycle"
    ).payments.get()
    assert payment.status == PaymentStatus.REQUIRES_ACTION
    return payment


def captures(payment: PaymentAttempt) -> int:
    return LedgerTransaction.objects.filter(payment=payment, kind="payment_captured").count()


@pytest.mark.django_db(transaction=True)
@postgresql_only
def test_the_same_event_delivered_five_times_at_once_is_stored_and_processed_once(
    stripe_gateway, browser, make_customer, price, catalog, secret_for_webhooks
):
    payment = awaiting_authentication(stripe_gateway, browser, make_customer(), price)
    intent = stripe_gateway.payment_intent_get(reference=payment.gateway_reference)
    browser.confirm_card_payment(intent.client_secret, success=True)
    succeeded = to_dict(stripe_gateway.payment_intent_get(reference=payment.gateway_reference))
    payload = event_payload("payment_intent.succeeded", succeeded)
    header = header_for(payload, secret_for_webhooks)

    workers = 5
    answers = concurrency.race(
        lambda index: (
            Client()
            .post(
                "/webhooks/stripe/",
                payload,
                content_type="application/json",
                headers={"Stripe-Signature": header},
            )
            .json()
        ),
        workers,
        timeout=60,
    )

    assert [answer["received"] for answer in answers] == [True] * workers
    assert sorted(answer["duplicate"] for answer in answers) == [False] + [True] * (workers - 1)
    event = InboundEvent.objects.get()
    assert (event.status, event.attempts) == (InboundEvent.Status.PROCESSED, 1)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert captures(payment) == 1


@pytest.fixture
def secret_for_webhooks(webhook_secrets: list[str]) -> str:
    return webhook_secrets[0]


def dispute(payment: PaymentAttempt, status: str) -> dict[str, Any]:
    return {
        "id": f"dp_{payment.public_id}",
        "object": "dispute",
        "amount": 1000,
        "currency": "usd",
        "payment_intent": payment.gateway_reference,
        "reason": "product_not_received",
        "status": status,
    }


def subscription_stream(gateway, browser, customer, price, staff, peer) -> list[bytes]:
    """A subscription's life at Stripe whose events Tollgate has not received yet: a renewal that
    needed authentication and got it, a refund whose answer was lost, a dispute opened and won, a
    card renewed by the bank; with duplicates, as Stripe sends them."""
    payment = awaiting_authentication(gateway, browser, customer, price)
    before = to_dict(gateway.payment_intent_get(reference=payment.gateway_reference))
    browser.confirm_card_payment(before["client_secret"], success=True)
    after = to_dict(gateway.payment_intent_get(reference=payment.gateway_reference))
    first = PaymentAttempt.objects.get(
        invoice__customer=customer, attempt_number=1, status="succeeded"
    )
    with peer.lose("POST", "/v1/refunds"):
        services.refund_issue(
            payment=first,
            amount=1000,
            reason=Refund.Reason.REQUESTED_BY_CUSTOMER,
            note="Late delivery",
            actor=staff,
            idempotency_key=new_key(),
        )
    [refund] = gateway.client.v1.refunds.list(
        params={"payment_intent": first.gateway_reference}
    ).data
    method = payment.payment_method
    gateway.client.v1.payment_methods.update(
        method.gateway_token,
        params={"card": {"exp_month": 4, "exp_year": 2032, "last4": "3155", "brand": "visa"}},
    )
    card = to_dict(gateway.payment_method_get(token=method.gateway_token))
    charge = {"id": "ch_refunded", "object": "charge", "payment_intent": first.gateway_reference}
    succeeded = event_payload("payment_intent.succeeded", after)
    return [
        event_payload("payment_intent.requires_action", before),
        succeeded,
        succeeded,
        event_payload("refund.created", {**to_dict(refund), "status": "pending"}),
        event_payload("charge.refunded", charge),
        event_payload("refund.updated", to_dict(refund)),
        event_payload("charge.dispute.created", dispute(first, "needs_response")),
        event_payload("charge.dispute.updated", dispute(first, "under_review")),
        event_payload("charge.dispute.closed", dispute(first, "won")),
        event_payload("payment_method.automatically_updated", card),
        event_payload("payment_method.updated", card),
    ]


def deliver_all(payloads: list[bytes], secret: str) -> None:
    """Receive each (the worker processes it at once), then let the sweep retry what was early."""
    for payload in payloads:
        receipt = inbox.event_receive(
            gateway="stripe", payload=payload, signature=header_for(payload, secret)
        )
        inbox.event_process(event_id=receipt.event.pk)
    later = clock.now()
    for _ in range(5):
        later += dt.timedelta(hours=1)
        with clock.frozen(later):
            inbox.events_sweep()


def final_state(customer: Customer) -> dict[str, Any]:
    payments = PaymentAttempt.objects.filter(invoice__customer=customer).order_by("created_at")
    return {
        "payments": [(p.attempt_number, p.status, p.amount_refunded) for p in payments],
        "invoices": sorted(
            Invoice.objects.filter(customer=customer).values_list("billing_reason", "status")
        ),
        "subscription": customer.subscriptions.get().status,
        "refunds": list(
            Refund.objects.filter(payment__in=payments).values_list("status", "amount")
        ),
        "disputes": list(
            Dispute.objects.filter(payment__in=payments).values_list("status", "amount")
        ),
        "cards": sorted(customer.payment_methods.values_list("last4", "exp_month", "exp_year")),
        "ledger": sorted(
            LedgerTransaction.objects.filter(customer=customer).values_list("kind", flat=True)
        ),
    }


@pytest.mark.django_db
def test_a_shuffled_event_stream_ends_in_the_same_state_as_the_stream_in_order(
    stripe_gateway, browser, make_customer, price, staff, peer, secret_for_webhooks
):
    in_order = make_customer("in-order@example.org")
    shuffled = make_customer("shuffled@example.org")
    stream = subscription_stream(stripe_gateway, browser, in_order, price, staff, peer)
    other = subscription_stream(stripe_gateway, browser, shuffled, price, staff, peer)
    random.Random(20250228).shuffle(other)

    deliver_all(stream, secret_for_webhooks)
    deliver_all(other, secret_for_webhooks)

    expected = final_state(in_order)
    assert final_state(shuffled) == expected
    assert expected["payments"] == [(1, "succeeded", 1000), (1, "succeeded", 0)]
    assert expected["refunds"] == [("succeeded", 1000)]
    assert expected["disputes"] == [("won", 1000)]
    assert ("3155", 4, 2032) in expected["cards"]
    assert set(InboundEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert InboundEvent.objects.count() == 2 * (len(stream) - 1)  # the duplicate stored once


@pytest.mark.django_db(transaction=True)
@postgresql_only
def test_an_event_whose_worker_was_killed_mid_way_is_processed_once_after_restart(
    stripe_gateway, browser, make_customer, price, catalog, peer, secret_for_webhooks, tmp_path
):
    payment = awaiting_authentication(stripe_gateway, browser, make_customer(), price)
    intent = stripe_gateway.payment_intent_get(reference=payment.gateway_reference)
    browser.confirm_card_payment(intent.client_secret, success=True)
    succeeded = to_dict(stripe_gateway.payment_intent_get(reference=payment.gateway_reference))
    payload = event_payload("payment_intent.succeeded", succeeded)
    with peer.lose("GET", "/v1/payment_intents/"):  # the first try cannot reach Stripe
        event = inbox.event_receive(
            gateway="stripe", payload=payload, signature=header_for(payload, secret_for_webhooks)
        ).event
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.FAILED
    InboundEvent.objects.filter(pk=event.pk).update(next_attempt_at=clock.now())  # retry due now

    with peer.hold("GET", "/v1/payment_intents/"):
        worker = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import django; django.setup(); from tollgate.billing.inbound import inbox; "
                f"inbox.event_process(event_id={event.pk})",
            ],
            env=worker_environment(peer.url, secret_for_webhooks, tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert peer.held.wait(timeout=60), "the worker never asked Stripe"
            event.refresh_from_db()
            assert (event.attempts, event.locked_until is not None) == (2, True)
        finally:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REQUIRES_ACTION  # died before recording anything

    assert inbox.events_sweep() == 0  # its lease still holds
    with clock.frozen(clock.now() + inbox.LEASE + dt.timedelta(seconds=1)):
        assert inbox.events_sweep() == 1
        assert inbox.events_sweep() == 0
    event.refresh_from_db()
    payment.refresh_from_db()
    assert (event.status, event.attempts) == (InboundEvent.Status.PROCESSED, 3)
    assert payment.status == PaymentStatus.SUCCEEDED
    assert captures(payment) == 1


def worker_environment(api_base: str, webhook_secret: str, data_dir) -> dict[str, str]:
    """The environment of a separate worker process on this test's database."""
    database = connection.settings_dict
    url = (
        f"postgres://{database['USER']}:{database['PASSWORD'] or ''}@{database['HOST']}:"
        f"{database['PORT']}/{database['NAME']}"
    )
    keep = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "LANG")}
    return {
        **keep,
        "DJANGO_SETTINGS_MODULE": "tollgate.config.settings",
        "TOLLGATE_ENV": "test",
        "TOLLGATE_DATA_DIR": str(data_dir),
        "DATABASE_URL": url,
        "TOLLGATE_GATEWAY": "stripe",
        "TOLLGATE_STRIPE_SECRET_KEY": SECRET_KEY,
        "TOLLGATE_STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
        "TOLLGATE_STRIPE_WEBHOOK_SECRETS": webhook_secret,
        "TOLLGATE_STRIPE_API_BASE": api_base,
        "TOLLGATE_STRIPE_JS_URL": f"{api_base}/js.stripe.com/v3/",
    }
