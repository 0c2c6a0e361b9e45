"""A discount through a plan change and a refund: the upgrade prorates what was paid after the
discount and discounts the new price's remaining time; refunds never exceed what was paid."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.billing import reports, revenue, services
from tollgate.billing.clock import billing_run
from tollgate.billing.errors import RefundExceedsCaptured
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Invoice, PaymentAttempt, Refund
from tollgate.billing.previews import change_preview
from tollgate.core import clock
from tollgate.core.money import Money

pytestmark = pytest.mark.django_db
START = dt.datetime(2025, 1, 10, 10, tzinfo=dt.UTC)
MIDWAY = START + dt.timedelta(days=15, hours=12)  # half of a 31-day period


@pytest.fixture
def half_off(staff):
    coupon = services.coupon_create(
        name="Half", percent_off=Decimal("50"), duration="forever", actor=staff
    )
    services.promotion_code_create(coupon=coupon, code="HALF", actor=staff)


def start(customer, price, code="HALF"):
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        return services.subscription_start(
            customer=customer,
            price=price,
            trial=False,
            idempotency_key=new_key(),
            promotion_code=code,
        )


def test_an_upgrade_prorates_what_was_paid_after_the_discount_and_discounts_the_new_price(
    customer, price, half_off
):
    subscription = start(customer, price("starter"))
    with clock.frozen(MIDWAY):
        preview = change_preview(subscription=subscription, price=price("pro"), at=MIDWAY)
        services.subscription_change_price(
            subscription=subscription, price=price("pro"), idempotency_key=new_key()
        )

    invoice = Invoice.objects.get(billing_reason="subscription_update")
    lines = {line.kind: line.amount for line in invoice.lines.all()}
    # Half of the period left: half of Starter's 450 paid back, half of Pro's 2900 less 50%.
    assert lines == {"proration_credit": -225, "proration_debit": 1450, "discount": -725}
    assert invoice.total == preview.due_now == 500
    assert (preview.credit, preview.debit, preview.discount) == (225, 1450, 725)
    assert invoice.status == "paid"
    assert ledger_check().ok


def test_an_upgrade_to_a_plan_the_coupon_does_not_cover_charges_its_list_price(
    customer, price, staff
):
    coupon = services.coupon_create(
        name="Starter only",
        percent_off=Decimal("50"),
        duration="forever",
        plans=[price("starter").plan],
        actor=staff,
    )
    services.promotion_code_create(coupon=coupon, code="STARTER", actor=staff)
    subscription = start(customer, price("starter"), code="STARTER")
    with clock.frozen(MIDWAY):
        services.subscription_change_price(
            subscription=subscription, price=price("pro"), idempotency_key=new_key()
        )

    invoice = Invoice.objects.get(billing_reason="subscription_update")
    assert invoice.total == 1450 - 225  # the credit is still what was paid: half of 450
    assert not invoice.lines.filter(kind="discount").exists()
    assert ledger_check().ok


def test_a_prorated_refund_of_a_discounted_period_is_of_what_was_paid(customer, price, half_off):
    subscription = start(customer, price("pro"))
    with clock.frozen(MIDWAY):
        services.subscription_cancel(
            subscription=subscription,
            at_period_end=False,
            prorated_refund=True,
            idempotency_key=new_key(),
        )
    refund = Refund.objects.get()
    assert refund.amount == 725  # half of the 1450 paid, not half of the 2900 list price
    assert ledger_check().ok


def test_staff_cannot_refund_more_than_the_discounted_payment(customer, price, half_off, staff):
    start(customer, price("pro"))
    payment = PaymentAttempt.objects.get()
    assert payment.amount == 1450
    with pytest.raises(RefundExceedsCaptured):
        services.refund_issue(
            payment=payment,
            amount=2900,
            reason=Refund.Reason.REQUESTED_BY_CUSTOMER,
            note="list price",
            actor=staff,
            idempotency_key=new_key(),
        )
    assert not Refund.objects.exists()


def test_mrr_now_and_month_by_month_is_net_of_discounts(make_customer, price, staff):
    coupon = services.coupon_create(
        name="Two months",
        percent_off=Decimal("25"),
        duration="repeating",
        duration_periods=2,
        actor=staff,
    )
    services.promotion_code_create(coupon=coupon, code="TWO", actor=staff)
    start(make_customer(email="a@example.org"), price("pro"), code="TWO")
    start(make_customer(email="b@example.org"), price("pro"), code="")

    with clock.frozen(START + dt.timedelta(days=1)):
        assert reports.revenue_mrr_totals() == [Money(2900 + 2175, "USD")]
        [line] = reports.revenue_mrr()
        assert line.mrr == Money(5075, "USD")
    for month in (2, 3, 4):
        with clock.frozen(START.replace(month=month) + dt.timedelta(minutes=1)):
            assert billing_run().failed == 0
    with clock.frozen(START.replace(month=4, day=20)):
        # The discount covered January's and February's periods, not March's or April's.
        assert reports.revenue_mrr_totals() == [Money(5800, "USD")]
        history = revenue.revenue_history(months=3)
    february, march, april = history.by_currency["USD"]
    assert (february.start_mrr, february.mrr, march.mrr, april.mrr) == (5075, 5075, 5800, 5800)
    assert march.expansion == 725  # the discount ending reads as expansion
