"""The billing engine publishes its changes; each reaches the operator's endpoint as a signed
webhook carrying the object's state (built through the real services and the sandbox gateway)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.billing.conftest import CARD_DECLINES_AFTER_ATTACH, CARD_OK, add_card, new_key
from tests.integrations.conftest import Receiver
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.models import Invoice, PaymentAttempt, Refund, Subscription
from tollgate.core import clock
from tollgate.integrations.webhooks import webhook_endpoint_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_targets")]
START = dt.datetime(2025, 1, 31, 10, tzinfo=dt.UTC)
RENEWAL = dt.datetime(2025, 2, 28, 10, 1, tzinfo=dt.UTC)


def received(receiver: Receiver) -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of every request the receiver got, in order."""
    documents = [json.loads(request.body) for request in receiver.requests]
    return [(document["type"], document["data"]) for document in documents]


def types(receiver: Receiver) -> list[str]:
    return [event_type for event_type, _ in received(receiver)]


@pytest.fixture
def secret(webhook_receiver: Receiver) -> str:
    return webhook_endpoint_create(url=webhook_receiver.url(), event_types=[], actor=None)[1]


@pytest.fixture
def paying(customer, price, secret, django_capture_on_commit_callbacks) -> Subscription:
    add_card(customer, CARD_OK)
    with django_capture_on_commit_callbacks(execute=True), clock.frozen(START):
        return services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )


def test_a_trial_start_is_delivered_as_subscription_created_and_signed(
    customer, price, secret, webhook_receiver: Receiver, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        subscription = services.subscription_start(
            customer=customer, price=price("starter"), idempotency_key=new_key()
        )
    assert sorted(types(webhook_receiver)) == ["entitlements.updated", "subscription.created"]
    request = next(r for r in webhook_receiver.requests if b'"subscription.created"' in r.body[:40])
    data = Webhook(secret).verify(request.body, request.headers)["data"]
    assert (data["object"], data["id"], data["status"], data["plan"]) == (
        "subscription",
        subscription.public_id,
        "trialing",
        "starter",
    )
    entitlements = dict(received(webhook_receiver))["entitlements.updated"]["entitlements"]
    assert entitlements == {
        "subscription": subscription.public_id,
        "plan": "starter",
        "status": "trialing",
        "active": True,
    }


def test_a_paid_start_is_delivered_with_its_invoice_paid(
    paying: Subscription, webhook_receiver: Receiver
) -> None:
    events = received(webhook_receiver)
    assert [t for t, _ in events if not t.startswith("entitlements")] == [
        "subscription.created",
        "invoice.paid",
        "subscription.updated",
    ]
    invoice = Invoice.objects.get(subscription=paying)
    paid = dict(events)["invoice.paid"]
    assert (paid["id"], paid["status"], paid["amount_paid"]) == (invoice.public_id, "paid", 2900)
    assert dict(events)["subscription.updated"]["status"] == "active"


def test_a_refund_is_delivered_as_refund_created(
    paying: Subscription, staff, webhook_receiver: Receiver, django_capture_on_commit_callbacks
) -> None:
    payment = PaymentAttempt.objects.get(invoice__subscription=paying)
    with django_capture_on_commit_callbacks(execute=True):
        services.refund_issue(
            payment=payment,
            amount=900,
            reason=Refund.Reason.REQUESTED_BY_CUSTOMER,
            note="Asked for it",
            actor=staff,
            idempotency_key=new_key(),
        )
    event_type, data = received(webhook_receiver)[-1]
    assert event_type == "refund.created"
    refund = Refund.objects.get()
    assert (data["id"], data["amount"], data["status"], data["payment"]) == (
        refund.public_id,
        900,
        "succeeded",
        payment.public_id,
    )


def test_an_endpoint_hears_only_the_types_it_chose(
    customer, price, webhook_receiver: Receiver, django_capture_on_commit_callbacks
) -> None:
    webhook_endpoint_create(
        url=webhook_receiver.url(), event_types=["subscription.canceled"], actor=None
    )
    with django_capture_on_commit_callbacks(execute=True):
        subscription = services.subscription_start(
            customer=customer, price=price("starter"), idempotency_key=new_key()
        )
        services.subscription_cancel(
            subscription=subscription, at_period_end=False, idempotency_key=new_key()
        )
    assert types(webhook_receiver) == ["subscription.canceled"]
    assert received(webhook_receiver)[0][1]["status"] == "canceled"


def test_cancel_resume_change_and_extend_are_each_delivered(
    paying: Subscription,
    price,
    staff,
    webhook_receiver: Receiver,
    django_capture_on_commit_callbacks,
) -> None:
    webhook_receiver.requests.clear()
    changes = [
        lambda: services.subscription_cancel(
            subscription=paying, at_period_end=True, idempotency_key=new_key()
        ),
        lambda: services.subscription_resume(subscription=paying),
        lambda: services.subscription_change_price(
            subscription=paying, price=price("starter"), idempotency_key=new_key()
        ),
        lambda: services.subscription_scheduled_change_cancel(subscription=paying),
        lambda: services.subscription_extend(
            subscription=paying, days=3, reason="Outage", actor=staff
        ),
    ]
    for change in changes:  # each delivered after its own commit
        with django_capture_on_commit_callbacks(execute=True), clock.frozen(START):
            change()
    events = received(webhook_receiver)
    assert [t for t, _ in events] == [
        "subscription.canceled",
        "subscription.resumed",
        "subscription.updated",
        "subscription.updated",
        "subscription.updated",
    ]
    # Each carries the subscription as it is when delivered, just after its change.
    assert events[0][1]["cancel_at_period_end"] is True
    assert events[1][1]["cancel_at_period_end"] is False
    assert events[4][1]["current_period_end"] == "2025-03-03T10:00:00Z"


def test_renewals_are_delivered_set_wise_and_one_by_one(
    paying: Subscription, settings, webhook_receiver: Receiver, django_capture_on_commit_callbacks
) -> None:
    webhook_receiver.requests.clear()
    with django_capture_on_commit_callbacks(execute=True), clock.frozen(RENEWAL):
        assert billing_run().renewed == 1  # a plain renewal: set-wise
    settings.BILLING_INVOICE_NUMBERING = "account"  # not a plain renewal: one by one
    with (
        django_capture_on_commit_callbacks(execute=True),
        clock.frozen(RENEWAL.replace(month=3, day=31)),
    ):
        assert billing_run().renewed == 1
    events = received(webhook_receiver)
    assert [t for t, _ in events] == ["subscription.updated", "invoice.paid"] * 2
    renewals = Invoice.objects.filter(subscription=paying, billing_reason="subscription_cycle")
    assert {data["id"] for t, data in events if t == "invoice.paid"} == {
        invoice.public_id for invoice in renewals
    }


def test_a_declined_renewal_is_delivered_as_payment_failed_and_past_due(
    paying: Subscription,
    customer,
    webhook_receiver: Receiver,
    django_capture_on_commit_callbacks,
) -> None:
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    webhook_receiver.requests.clear()
    with django_capture_on_commit_callbacks(execute=True), clock.frozen(RENEWAL):
        billing_run()
    events = [(t, data) for t, data in received(webhook_receiver) if t != "entitlements.updated"]
    assert [t for t, _ in events] == [
        "subscription.updated",
        "invoice.payment_failed",
        "subscription.past_due",
    ]
    failed = dict(events)["invoice.payment_failed"]
    assert failed["subscription"] == paying.public_id
    assert failed["status"] == "open"
    assert dict(events)["subscription.past_due"]["status"] == "past_due"
