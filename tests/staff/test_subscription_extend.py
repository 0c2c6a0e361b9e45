"""Extending a subscription: the current period (and a trial) ends later, the billing schedule
continues from the new end, nothing is charged, and it is audited."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.billing.conftest import CARD_DECLINES_AFTER_ATTACH, CARD_OK, add_card, new_key
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.errors import TransitionRefused
from tollgate.billing.models import Invoice, PaymentAttempt
from tollgate.billing.states import SubscriptionStatus
from tollgate.core import clock
from tollgate.core.errors import PermissionDenied, ValidationFailed

pytestmark = pytest.mark.django_db
START = dt.datetime(2026, 1, 31, 10, tzinfo=dt.UTC)


def at(*args):
    return dt.datetime(*args, tzinfo=dt.UTC)


def extend(subscription, staff, days, reason="Outage credit", **options):
    return services.subscription_extend(
        subscription=subscription, days=days, reason=reason, actor=staff, **options
    )


@pytest.fixture
def active(customer, price):
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        return services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )


@pytest.fixture
def trialing(customer, price):
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        return services.subscription_start(
            customer=customer, price=price("starter"), idempotency_key=new_key()
        )


def cycle_invoices(subscription):
    return list(
        Invoice.objects.filter(
            subscription=subscription, billing_reason="subscription_cycle"
        ).order_by("period_start")
    )


def test_an_active_period_ends_later_and_the_next_one_starts_at_the_new_end(active, staff):
    assert active.current_period_end == at(2026, 2, 28, 10)
    with clock.frozen(at(2026, 2, 10)):
        extended = extend(active, staff, 7)
    assert extended.current_period_end == at(2026, 3, 7, 10)
    assert extended.billing_anchor == at(2026, 3, 7, 10)
    assert extended.status == SubscriptionStatus.ACTIVE
    assert extended.trial_end is None

    with clock.frozen(at(2026, 3, 1)):
        assert billing_run().renewed == 0  # the old end passes without a renewal
    with clock.frozen(at(2026, 3, 7, 10)):
        assert billing_run().renewed == 1
    (renewal,) = cycle_invoices(active)
    assert (renewal.period_start, renewal.period_end) == (at(2026, 3, 7, 10), at(2026, 4, 7, 10))
    assert renewal.status == "paid"
    active.refresh_from_db()
    assert (active.current_period_start, active.current_period_end) == (
        at(2026, 3, 7, 10),
        at(2026, 4, 7, 10),
    )


def test_extending_charges_nothing_and_leaves_the_paid_invoice_alone(active, staff):
    first = Invoice.objects.get(subscription=active)
    payments_before = PaymentAttempt.objects.count()
    with clock.frozen(at(2026, 2, 10)):
        extend(active, staff, 30)
    first.refresh_from_db()
    assert (first.period_start, first.period_end, first.total) == (START, at(2026, 2, 28, 10), 2900)
    assert PaymentAttempt.objects.count() == payments_before


def test_a_trial_is_extended_and_converts_at_its_new_end(trialing, staff):
    assert trialing.trial_end == at(2026, 2, 14, 10)
    with clock.frozen(at(2026, 2, 1)):
        extended = extend(trialing, staff, 10)
    assert extended.status == SubscriptionStatus.TRIALING
    assert extended.trial_end == extended.current_period_end == at(2026, 2, 24, 10)
    assert extended.billing_anchor == at(2026, 2, 24, 10)

    with clock.frozen(at(2026, 2, 14, 10)):
        assert billing_run().renewed == 0
    with clock.frozen(at(2026, 2, 24, 10)):
        assert billing_run().renewed == 1
    trialing.refresh_from_db()
    assert trialing.status == SubscriptionStatus.ACTIVE
    (first,) = cycle_invoices(trialing)
    assert (first.period_start, first.period_end, first.status) == (
        at(2026, 2, 24, 10),
        at(2026, 3, 24, 10),
        "paid",
    )


def test_a_cancellation_at_period_end_moves_with_the_extension(active, staff):
    with clock.frozen(at(2026, 2, 10)):
        services.subscription_cancel(
            subscription=active, at_period_end=True, idempotency_key=new_key()
        )
        extend(active, staff, 5)
    with clock.frozen(at(2026, 3, 1)):
        billing_run()
    active.refresh_from_db()
    assert active.status == SubscriptionStatus.ACTIVE
    with clock.frozen(at(2026, 3, 5, 10)):
        billing_run()
    active.refresh_from_db()
    assert (active.status, active.ended_at) == (SubscriptionStatus.CANCELED, at(2026, 3, 5, 10))
    assert cycle_invoices(active) == []


def test_the_extension_is_audited_with_the_reason_and_both_ends(active, staff):
    with clock.frozen(at(2026, 2, 10)):
        extend(active, staff, 3, reason="  Outage on 9 Feb  ")
    event = AuditEvent.objects.get(action="billing.subscription_extended")
    assert (event.actor, event.target_id) == (staff, active.public_id)
    assert event.details["days"] == 3
    assert event.details["reason"] == "Outage on 9 Feb"
    assert event.details["before"]["current_period_end"] == at(2026, 2, 28, 10).isoformat()
    assert event.details["current_period_end"] == at(2026, 3, 3, 10).isoformat()


def test_the_same_key_extends_once(active, staff):
    key = new_key()
    with clock.frozen(at(2026, 2, 10)):
        extend(active, staff, 7, idempotency_key=key)
        again = extend(active, staff, 7, idempotency_key=key)
    assert again.current_period_end == at(2026, 3, 7, 10)
    assert AuditEvent.objects.filter(action="billing.subscription_extended").count() == 1


@pytest.mark.parametrize("days", [0, -1, 367, True, "7"])
def test_days_outside_one_to_366_whole_days_are_refused(active, staff, days):
    with pytest.raises(ValidationFailed):
        extend(active, staff, days)


def test_an_empty_reason_is_refused(active, staff):
    with pytest.raises(ValidationFailed):
        extend(active, staff, 3, reason="   ")


def test_only_staff_extend(active, customer):
    with pytest.raises(PermissionDenied):
        extend(active, customer.user, 3)


def test_a_past_due_subscription_is_not_extended(customer, price, staff):
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price("starter"), idempotency_key=new_key()
        )
    with clock.frozen(at(2026, 2, 14, 10)):
        billing_run()
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.PAST_DUE
    with clock.frozen(at(2026, 2, 15)), pytest.raises(TransitionRefused):
        extend(subscription, staff, 3)


def test_an_ended_subscription_is_not_extended(active, staff):
    with clock.frozen(at(2026, 2, 10)):
        services.subscription_cancel(
            subscription=active, at_period_end=False, idempotency_key=new_key()
        )
        with pytest.raises(TransitionRefused):
            extend(active, staff, 3)


def test_a_period_that_has_ended_is_renewed_not_extended(active, staff):
    with clock.frozen(at(2026, 2, 28, 11)), pytest.raises(TransitionRefused):
        extend(active, staff, 3)
