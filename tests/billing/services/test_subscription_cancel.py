import datetime as dt

import pytest

from tests.billing.conftest import (
    CARD_INSUFFICIENT_FUNDS,
    CARD_OK,
    CARD_REQUIRES_AUTHENTICATION,
    add_card,
    new_key,
)
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.errors import PaymentInProgress, TransitionRefused
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Invoice
from tollgate.billing.selectors import subscription_current
from tollgate.billing.states import InvoiceStatus, SubscriptionStatus
from tollgate.core import clock

pytestmark = pytest.mark.django_db
START = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


@pytest.fixture
def active(customer, price):
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        return services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )


def test_cancel_at_period_end_keeps_access_and_can_be_resumed(active):
    with clock.frozen(START + dt.timedelta(days=3)):
        canceled = services.subscription_cancel(
            subscription=active, at_period_end=True, idempotency_key=new_key()
        )
        assert (canceled.status, canceled.cancel_at_period_end) == ("active", True)
        assert canceled.canceled_at == START + dt.timedelta(days=3)
        resumed = services.subscription_resume(subscription=active)
    assert (resumed.cancel_at_period_end, resumed.canceled_at) == (False, None)
    assert AuditEvent.objects.filter(action="billing.subscription_resumed").exists()


def test_resuming_needs_a_scheduled_cancellation_and_a_period_not_over(active):
    with pytest.raises(TransitionRefused):
        services.subscription_resume(subscription=active)
    services.subscription_cancel(subscription=active, at_period_end=True, idempotency_key=new_key())
    with clock.frozen(active.current_period_end), pytest.raises(TransitionRefused):
        services.subscription_resume(subscription=active)


def test_cancel_now_ends_at_once(active, customer):
    with clock.frozen(START + dt.timedelta(days=3)):
        ended = services.subscription_cancel(
            subscription=active, at_period_end=False, idempotency_key=new_key()
        )
    assert (ended.status, ended.ended_at) == ("canceled", START + dt.timedelta(days=3))
    assert subscription_current(customer=customer) is None
    with pytest.raises(TransitionRefused):
        services.subscription_cancel(
            subscription=active, at_period_end=False, idempotency_key=new_key()
        )


def test_cancel_now_voids_what_is_still_owed(customer, price):
    add_card(customer, CARD_INSUFFICIENT_FUNDS)
    subscription = services.subscription_start(
        customer=customer, price=price("pro"), idempotency_key=new_key()
    )
    services.subscription_cancel(
        subscription=subscription, at_period_end=False, idempotency_key=new_key()
    )
    assert Invoice.objects.get().status == InvoiceStatus.VOID
    assert ledger_check().ok


def test_cancel_now_waits_for_a_payment_in_progress(customer, price):
    add_card(customer, CARD_REQUIRES_AUTHENTICATION)
    subscription = services.subscription_start(
        customer=customer, price=price("pro"), idempotency_key=new_key()
    )
    with pytest.raises(PaymentInProgress):
        services.subscription_cancel(
            subscription=subscription, at_period_end=False, idempotency_key=new_key()
        )


def test_an_incomplete_subscription_can_only_be_canceled_now(customer, price):
    add_card(customer, CARD_INSUFFICIENT_FUNDS)
    subscription = services.subscription_start(
        customer=customer, price=price("pro"), idempotency_key=new_key()
    )
    with pytest.raises(TransitionRefused, match="only be canceled now"):
        services.subscription_cancel(
            subscription=subscription, at_period_end=True, idempotency_key=new_key()
        )


def test_a_trial_can_be_canceled_now(customer, price):
    trial = services.subscription_start(
        customer=customer, price=price("starter"), idempotency_key=new_key()
    )
    assert (
        services.subscription_cancel(
            subscription=trial, at_period_end=False, idempotency_key=new_key()
        ).status
        == SubscriptionStatus.CANCELED
    )
