import datetime as dt

import pytest

from tests.billing.conftest import CARD_DECLINES_AFTER_ATTACH, CARD_OK, add_card, new_key
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.errors import TransitionRefused
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Invoice, PaymentAttempt
from tollgate.billing.states import SubscriptionStatus
from tollgate.catalog.services import catalog_load
from tollgate.core import clock
from tollgate.core.errors import ValidationFailed

pytestmark = pytest.mark.django_db
UTC = dt.UTC
START = dt.datetime(2025, 4, 1, tzinfo=UTC)  # April: 30 days


@pytest.fixture
def starter(customer, price):
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        return services.subscription_start(
            customer=customer, price=price("starter"), trial=False, idempotency_key=new_key()
        )


def test_an_upgrade_half_way_charges_the_prorated_difference_now(starter, price):
    with clock.frozen(START + dt.timedelta(days=15)):
        upgraded = services.subscription_change_price(
            subscription=starter, price=price("pro"), idempotency_key=new_key()
        )
    assert upgraded.price == price("pro")
    assert upgraded.status == SubscriptionStatus.ACTIVE
    invoice = Invoice.objects.get(billing_reason="subscription_update")
    lines = {line.kind: line.amount for line in invoice.lines.all()}
    assert lines == {"proration_credit": -450, "proration_debit": 1450}
    assert (invoice.total, invoice.status) == (1000, "paid")
    assert (invoice.period_start, invoice.period_end) == (
        START + dt.timedelta(days=15),
        upgraded.current_period_end,
    )
    assert invoice.payments.get().off_session is False
    assert ledger_check().ok
    # The next renewal bills the full new price.
    with clock.frozen(dt.datetime(2025, 5, 1, tzinfo=UTC)):
        billing_run()
    assert Invoice.objects.get(billing_reason="subscription_cycle").total == 2900


def test_a_failed_upgrade_payment_keeps_the_change_and_is_retried(starter, price, customer):
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    moment = START + dt.timedelta(days=15)
    with clock.frozen(moment):
        upgraded = services.subscription_change_price(
            subscription=starter, price=price("pro"), idempotency_key=new_key()
        )
    invoice = Invoice.objects.get(billing_reason="subscription_update")
    assert (upgraded.status, upgraded.price, invoice.status) == ("past_due", price("pro"), "open")
    assert invoice.next_payment_attempt_at == PaymentAttempt.objects.get(
        invoice=invoice
    ).completed_at + dt.timedelta(days=1)


def test_a_downgrade_is_scheduled_for_the_period_end_and_applied_then(customer, price):
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        pro = services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
    with clock.frozen(START + dt.timedelta(days=10)):
        scheduled = services.subscription_change_price(
            subscription=pro, price=price("starter"), idempotency_key=new_key()
        )
    assert (scheduled.price, scheduled.scheduled_price) == (price("pro"), price("starter"))
    assert not Invoice.objects.filter(billing_reason="subscription_update").exists()
    with clock.frozen(dt.datetime(2025, 5, 1, tzinfo=UTC)):
        billing_run()
    pro.refresh_from_db()
    assert (pro.price, pro.scheduled_price) == (price("starter"), None)
    assert Invoice.objects.get(billing_reason="subscription_cycle").total == 900


def test_a_scheduled_change_can_be_dropped(customer, price):
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        pro = services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
        services.subscription_change_price(
            subscription=pro, price=price("starter"), idempotency_key=new_key()
        )
        kept = services.subscription_scheduled_change_cancel(subscription=pro)
    assert kept.scheduled_price is None
    with pytest.raises(TransitionRefused, match="No plan change"):
        services.subscription_scheduled_change_cancel(subscription=pro)


def test_monthly_to_yearly_switches_at_the_period_end_with_a_new_anchor(starter, price):
    with clock.frozen(START + dt.timedelta(days=20)):
        services.subscription_change_price(
            subscription=starter, price=price("starter", "year"), idempotency_key=new_key()
        )
    with clock.frozen(dt.datetime(2025, 5, 1, tzinfo=UTC)):
        billing_run()
    starter.refresh_from_db()
    assert starter.billing_anchor == dt.datetime(2025, 5, 1, tzinfo=UTC)
    assert starter.current_period_end == dt.datetime(2026, 5, 1, tzinfo=UTC)
    assert Invoice.objects.get(billing_reason="subscription_cycle").total == 9000


def test_a_trial_changes_price_without_proration(customer, price):
    trial = services.subscription_start(
        customer=customer, price=price("starter"), idempotency_key=new_key()
    )
    catalog_load(
        document={
            "products": [
                {
                    "code": "app",
                    "name": "App",
                    "plans": [
                        {
                            "code": "plus",
                            "name": "Plus",
                            "trial_days": 14,
                            "prices": [{"amount": 1900, "currency": "USD", "interval": "month"}],
                        }
                    ],
                }
            ]
        }
    )
    changed = services.subscription_change_price(
        subscription=trial, price=price("plus"), idempotency_key=new_key()
    )
    assert (changed.status, changed.price) == ("trialing", price("plus"))
    assert not Invoice.objects.exists()


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ("same", ValidationFailed, "already on this price"),
        ("euro", ValidationFailed, "keeps its currency"),
        ("retired", ValidationFailed, "no longer offered"),
    ],
)
def test_invalid_changes_are_refused(starter, price, change, error, message):
    catalog_load(
        document={
            "products": [
                {
                    "code": "app",
                    "name": "App",
                    "plans": [
                        {
                            "code": "euro",
                            "name": "Euro",
                            "prices": [{"amount": 5000, "currency": "EUR", "interval": "month"}],
                        }
                    ],
                }
            ]
        }
    )
    target = {"same": price("starter"), "euro": price("euro"), "retired": price("free")}[change]
    if change == "retired":
        target.active = False
        target.save(update_fields=["active"])
    with pytest.raises(error, match=message):
        services.subscription_change_price(
            subscription=starter, price=target, idempotency_key=new_key()
        )


def test_an_incomplete_subscription_cannot_change_plans(customer, price):
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    subscription = services.subscription_start(
        customer=customer, price=price("starter"), trial=False, idempotency_key=new_key()
    )
    with pytest.raises(TransitionRefused, match="cannot change plans"):
        services.subscription_change_price(
            subscription=subscription, price=price("pro"), idempotency_key=new_key()
        )


def test_a_change_after_the_period_ended_waits_for_the_renewal(starter, price):
    with (
        clock.frozen(starter.current_period_end),
        pytest.raises(TransitionRefused, match="being renewed"),
    ):
        services.subscription_change_price(
            subscription=starter, price=price("pro"), idempotency_key=new_key()
        )
