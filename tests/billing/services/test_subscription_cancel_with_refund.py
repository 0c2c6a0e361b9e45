"""Cancel now with a prorated refund of the unused time; cancellation emails."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail

from tests.billing.conftest import CARD_DECLINES_AFTER_ATTACH, CARD_OK, add_card, new_key
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.gateways.sandbox.models import SandboxRefund
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Invoice, LedgerEntry, PaymentAttempt, Refund
from tollgate.billing.states import InvoiceStatus, SubscriptionStatus
from tollgate.core import clock
from tollgate.core.errors import ValidationFailed

pytestmark = pytest.mark.django_db
START = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)  # the period is March: 31 days
MARCH = 31 * 86400


def unused(amount: int, used_seconds: int, period_seconds: int = MARCH) -> int:
    """The rounding rule of billing/proration.py: the used part rounds down, the rest is unused."""
    return amount - amount * used_seconds // period_seconds


def cancel(subscription, key="cancel-1", **options):
    options.setdefault("at_period_end", False)
    return services.subscription_cancel(subscription=subscription, idempotency_key=key, **options)


@pytest.fixture
def active(customer, price):
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        return services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )


def test_cancel_now_refunds_the_unused_time_rounded_in_the_customers_favour(
    active, customer, django_capture_on_commit_callbacks
):
    used_seconds = 10 * 86400 + 7 * 3600 + 13
    with (
        clock.frozen(START + dt.timedelta(seconds=used_seconds)),
        django_capture_on_commit_callbacks(execute=True),
    ):
        ended = cancel(active, prorated_refund=True)
    assert (ended.status, ended.ended_at) == (
        "canceled",
        START + dt.timedelta(seconds=used_seconds),
    )
    # 2900 * 889213 / 2678400 = 962.78 used: 962 is charged, 1938 refunded.
    assert unused(2900, used_seconds) == 1938
    refund = Refund.objects.get()
    assert (refund.amount, refund.currency, refund.status, refund.reason) == (
        1938,
        "USD",
        "succeeded",
        "requested_by_customer",
    )
    assert active.public_id in refund.note
    assert refund.idempotency_key == f"{active.public_id}-cancel-{refund.payment.public_id}"
    assert SandboxRefund.objects.get().amount == 1938
    payment = PaymentAttempt.objects.get()
    assert payment.amount_refunded == 1938
    entries = {
        (e.account, e.amount) for e in LedgerEntry.objects.filter(transaction__refund=refund)
    }
    assert entries == {("refunds", 1938), ("gateway_clearing", -1938)}
    subjects = [message.subject for message in mail.outbox]
    assert "Your Pro subscription has been canceled" in subjects
    assert "Your refund of $19.38 from Tollgate" in subjects
    canceled_mail = next(m for m in mail.outbox if m.subject.endswith("has been canceled"))
    assert "We are refunding $19.38 for the unused time" in canceled_mail.body
    audit = AuditEvent.objects.get(action="billing.subscription_canceled")
    assert audit.details["refunded"] == 1938
    assert audit.details["refunds"] == [refund.public_id]
    assert ledger_check().ok


def test_repeating_the_cancellation_returns_it_without_refunding_twice(active):
    with clock.frozen(START + dt.timedelta(days=15)):
        first = cancel(active, prorated_refund=True)
        again = cancel(active, prorated_refund=True)
    assert again == first
    assert Refund.objects.count() == SandboxRefund.objects.count() == 1


def test_cancel_now_without_a_refund_refunds_nothing(active, django_capture_on_commit_callbacks):
    with (
        clock.frozen(START + dt.timedelta(days=15)),
        django_capture_on_commit_callbacks(execute=True),
    ):
        cancel(active)
    assert not Refund.objects.exists()
    message = mail.outbox[-1]
    assert message.subject == "Your Pro subscription has been canceled"
    assert "refunding" not in message.body
    assert ledger_check().ok


def test_a_prorated_refund_is_only_for_canceling_now(active):
    with pytest.raises(ValidationFailed) as refused:
        cancel(active, at_period_end=True, prorated_refund=True)
    assert refused.value.details == {"field": "prorated_refund"}


def test_cancel_at_period_end_tells_the_customer_when_it_ends(
    active, django_capture_on_commit_callbacks
):
    with (
        clock.frozen(START + dt.timedelta(days=3)),
        django_capture_on_commit_callbacks(execute=True),
    ):
        cancel(active, at_period_end=True)
    message = mail.outbox[-1]
    assert message.subject == "Your Pro subscription will end on April 1, 2025"
    assert "you can resume it before that date" in message.body
    assert not Refund.objects.exists()


def test_after_an_upgrade_the_refund_comes_from_the_latest_payments_first(customer, price):
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price("starter"), trial=False, idempotency_key=new_key()
        )
    upgraded_at = 10 * 86400
    with clock.frozen(START + dt.timedelta(seconds=upgraded_at)):
        services.subscription_change_price(
            subscription=subscription, price=price("pro"), idempotency_key=new_key()
        )
    first, upgrade = PaymentAttempt.objects.order_by("pk")
    # Paid for March: 900 for Starter, then Pro's remaining 21 days less Starter's unused part.
    assert upgrade.amount == 2900 * 21 // 31 - unused(900, upgraded_at)
    with clock.frozen(START + dt.timedelta(seconds=upgraded_at + 1)):
        cancel(subscription, prorated_refund=True)
    expected = unused(2900, upgraded_at + 1)
    refunds = {refund.payment_id: refund.amount for refund in Refund.objects.all()}
    assert refunds == {upgrade.pk: upgrade.amount, first.pk: expected - upgrade.amount}
    assert sum(refunds.values()) == expected
    assert ledger_check().ok


def test_after_an_upgrade_that_was_never_paid_the_old_prices_unused_time_is_refunded(
    customer, price
):
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price("starter"), trial=False, idempotency_key=new_key()
        )
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    with clock.frozen(START + dt.timedelta(days=10)):
        services.subscription_change_price(
            subscription=subscription, price=price("pro"), idempotency_key=new_key()
        )
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.PAST_DUE
    with clock.frozen(START + dt.timedelta(days=20)):
        cancel(subscription, prorated_refund=True)
    update = Invoice.objects.get(billing_reason="subscription_update")
    assert update.status == InvoiceStatus.VOID
    # Only Starter was paid for March: its last 11 days come back, not Pro's.
    assert Refund.objects.get().amount == unused(900, 20 * 86400) == 320
    assert ledger_check().ok


def test_the_refund_never_exceeds_what_is_left_of_the_periods_payments(active, staff):
    payment = PaymentAttempt.objects.get()
    services.refund_issue(
        payment=payment,
        amount=2500,
        reason=Refund.Reason.OTHER,
        note="Goodwill",
        actor=staff,
        idempotency_key="staff-1",
    )
    with clock.frozen(START + dt.timedelta(days=1)):
        cancel(active, prorated_refund=True)
    refund = Refund.objects.exclude(idempotency_key="staff-1").get()
    assert refund.amount == 400  # not the 2807 of unused time: only 400 was left to refund
    payment.refresh_from_db()
    assert payment.amount_refunded == payment.amount
    assert ledger_check().ok


def test_a_trial_has_nothing_to_refund(customer, price):
    with clock.frozen(START):
        trialing = services.subscription_start(
            customer=customer, price=price("starter"), idempotency_key=new_key()
        )
    assert trialing.status == SubscriptionStatus.TRIALING
    with clock.frozen(START + dt.timedelta(days=2)):
        ended = cancel(trialing, prorated_refund=True)
    assert ended.status == SubscriptionStatus.CANCELED
    assert not Refund.objects.exists()


def test_an_unpaid_period_is_voided_not_refunded(active, customer):
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    with clock.frozen(dt.datetime(2025, 4, 1, 10, tzinfo=dt.UTC)):
        billing_run()
    active.refresh_from_db()
    assert active.status == SubscriptionStatus.PAST_DUE
    with clock.frozen(dt.datetime(2025, 4, 5, tzinfo=dt.UTC)):
        cancel(active, prorated_refund=True)
    renewal = Invoice.objects.get(billing_reason="subscription_cycle")
    assert renewal.status == InvoiceStatus.VOID
    assert not Refund.objects.exists()  # April was never paid; March is over
    assert ledger_check().ok
