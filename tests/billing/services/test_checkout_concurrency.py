"""Concurrent checkouts and cancellations on PostgreSQL, with real threads on their own connections."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from tests import concurrency
from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.billing import services
from tollgate.billing.errors import SubscriptionExists, TransitionRefused
from tollgate.billing.gateways.sandbox.models import SandboxCharge, SandboxRefund
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Invoice, PaymentAttempt, Refund, Subscription
from tollgate.billing.states import SUBSCRIPTION_ENDED
from tollgate.core.errors import IdempotencyKeyInProgress
from tollgate.core.models import IdempotencyRecord

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="concurrent requests need PostgreSQL: SQLite serializes every writer",
    ),
]
SUBMISSIONS = 20


def race(task: Callable[[int], Any], workers: int = SUBMISSIONS) -> list[Any]:
    return concurrency.race(task, workers, timeout=120)


def test_twenty_identical_checkouts_make_one_subscription_and_one_charge(customer, price):
    add_card(customer, CARD_OK)
    pro = price("pro")

    outcomes = race(
        lambda index: services.subscription_start(
            customer=customer, price=pro, idempotency_key="checkout-double-click"
        )
    )

    subscriptions = [o for o in outcomes if isinstance(o, Subscription)]
    others = [o for o in outcomes if not isinstance(o, Subscription)]
    assert subscriptions, outcomes
    assert {s.pk for s in subscriptions} == {Subscription.objects.get().pk}
    # Every other submission got the first result or was told the first is still running.
    assert all(isinstance(o, IdempotencyKeyInProgress) for o in others), others
    assert Invoice.objects.count() == 1
    assert PaymentAttempt.objects.count() == 1
    assert SandboxCharge.objects.count() == 1
    assert Subscription.objects.get().status == "active"
    record = IdempotencyRecord.objects.get()
    assert (record.state, record.response["id"]) == ("completed", subscriptions[0].public_id)
    assert ledger_check().ok


def test_twenty_checkouts_with_different_keys_make_one_live_subscription(customer, price):
    add_card(customer, CARD_OK)
    pro = price("pro")

    outcomes = race(
        lambda index: services.subscription_start(
            customer=customer, price=pro, idempotency_key=f"checkout-{index}"
        )
    )

    subscriptions = [o for o in outcomes if isinstance(o, Subscription)]
    refused = [o for o in outcomes if not isinstance(o, Subscription)]
    assert len(subscriptions) == 1, outcomes
    assert len(refused) == SUBMISSIONS - 1
    assert all(isinstance(o, SubscriptionExists) for o in refused), refused
    assert all(o.code == "subscription_exists" and o.status == 409 for o in refused)
    assert Subscription.objects.exclude(status__in=sorted(SUBSCRIPTION_ENDED)).count() == 1
    assert Subscription.objects.count() == 1
    # No orphan charges: one invoice, one attempt, one charge at the gateway.
    assert Invoice.objects.count() == PaymentAttempt.objects.count() == 1
    assert SandboxCharge.objects.count() == 1
    states = sorted(IdempotencyRecord.objects.values_list("state", "error_code"))
    assert states == [("completed", "")] + [("failed", "subscription_exists")] * (SUBMISSIONS - 1)
    assert ledger_check().ok


def test_concurrent_cancellations_with_refund_refund_once(customer, price):
    add_card(customer, CARD_OK)
    subscription = services.subscription_start(
        customer=customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )

    outcomes = race(
        lambda index: services.subscription_cancel(
            subscription=subscription,
            at_period_end=False,
            prorated_refund=True,
            idempotency_key=f"cancel-{index % 2}",  # two clients, each submitting ten times
        ),
        workers=10,
    )

    canceled = [o for o in outcomes if isinstance(o, Subscription)]
    assert canceled, outcomes
    assert all(
        isinstance(o, Subscription | IdempotencyKeyInProgress | TransitionRefused) for o in outcomes
    ), outcomes
    assert Refund.objects.count() == SandboxRefund.objects.count() == 1
    assert Refund.objects.get().status == "succeeded"
    assert ledger_check().ok
