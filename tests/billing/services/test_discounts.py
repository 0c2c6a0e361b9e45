"""Coupons and promotion codes at checkout, on renewals (both paths) and applied by staff."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Sum

from tests.billing.conftest import CARD_DECLINES_AFTER_ATTACH, CARD_OK, add_card, new_key
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.errors import PromotionCodeRefused
from tollgate.billing.integrity import ledger_check
from tollgate.billing.locks import lock_subscription
from tollgate.billing.models import (
    Coupon,
    Discount,
    Invoice,
    LedgerAccount,
    LedgerEntry,
    PaymentAttempt,
    PromotionCode,
    Subscription,
)
from tollgate.billing.steps.renewals import subscription_renew_locked
from tollgate.core import clock

pytestmark = pytest.mark.django_db
START = dt.datetime(2025, 1, 10, 10, tzinfo=dt.UTC)


def month(n: int) -> dt.datetime:
    return START.replace(month=1 + n) + dt.timedelta(minutes=1)


@pytest.fixture
def make_code(staff):
    def factory(code: str = "SPRING", *, code_limit=None, **coupon) -> PromotionCode:
        fields = {"name": "Spring", "percent_off": Decimal("20"), "duration": "forever"}
        fields.update(coupon)
        made = services.coupon_create(actor=staff, **fields)
        return services.promotion_code_create(
            coupon=made, code=code, max_redemptions=code_limit, actor=staff
        )

    return factory


def checkout(customer, price, code: str, **kwargs) -> Subscription:
    with clock.frozen(START):
        return services.subscription_start(
            customer=customer,
            price=price,
            idempotency_key=new_key(),
            promotion_code=code,
            **kwargs,
        )


def lines(invoice: Invoice) -> list[tuple[str, int]]:
    return [(line.kind, line.amount) for line in invoice.lines.all()]


def booked(account: LedgerAccount) -> int:
    return LedgerEntry.objects.filter(account=account).aggregate(s=Sum("amount"))["s"] or 0


def test_a_code_at_checkout_puts_a_discount_line_on_the_first_invoice_and_charges_the_rest(
    customer, price, make_code
):
    add_card(customer, CARD_OK)
    make_code("SPRING")

    subscription = checkout(customer, price("pro"), "  spring ")

    invoice = Invoice.objects.get(subscription=subscription)
    assert lines(invoice) == [("plan_charge", 2900), ("discount", -580)]
    assert (invoice.status, invoice.total, invoice.amount_paid) == ("paid", 2320, 2320)
    assert PaymentAttempt.objects.get(invoice=invoice).amount == 2320
    # Revenue at list price, the discount as contra-revenue: together what was owed.
    assert booked(LedgerAccount.REVENUE) == -2900
    assert booked(LedgerAccount.DISCOUNTS) == 580
    assert ledger_check().ok
    promotion = PromotionCode.objects.get()
    assert promotion.times_redeemed == promotion.coupon.times_redeemed == 1
    assert Discount.objects.get().subscription == subscription


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ({"code": "OTHER"}, "unknown"),
        ({"redeem_by": START - dt.timedelta(days=1)}, "expired"),
        ({"code_limit": 1, "used": True}, "exhausted"),
        ({"max_redemptions": 1, "used": True}, "exhausted"),
        ({"plan": "starter"}, "not_applicable"),
        ({"amount_off": 500, "currency": "EUR", "percent_off": None}, "not_applicable"),
        ({"first_time_only": True, "returning": True}, "first_time_only"),
    ],
)
def test_a_code_that_cannot_be_used_refuses_the_checkout_saying_why_and_counts_nothing(
    make_customer, price, make_code, setup, reason
):
    setup = dict(setup)
    code = setup.pop("code", "SPRING")
    used, returning = setup.pop("used", False), setup.pop("returning", False)
    plan = setup.pop("plan", None)
    if plan:
        setup["plans"] = [price(plan).plan]
    make_code("SPRING", **setup)
    if used:
        first = make_customer(email="first@example.org")
        add_card(first)
        checkout(first, price("pro"), "SPRING")
    customer = make_customer()
    add_card(customer)
    if returning:
        checkout(customer, price("pro"), "")
        services.subscription_cancel(
            subscription=Subscription.objects.get(customer=customer),
            at_period_end=False,
            idempotency_key=new_key(),
        )
    counted = PromotionCode.objects.get().times_redeemed

    with pytest.raises(PromotionCodeRefused) as refused:
        checkout(customer, price("pro"), code)

    assert refused.value.details["reason"] == reason
    assert refused.value.status == 422
    assert not Subscription.objects.filter(customer=customer, ended_at__isnull=True).exists()
    assert PromotionCode.objects.get().times_redeemed == counted


def renew_one_by_one(subscription: Subscription, at: dt.datetime) -> Invoice:
    with clock.frozen(at), transaction.atomic():
        locks = lock_subscription(subscription)
        return subscription_renew_locked(customer=locks.customer, subscription=locks.subscription)


def renew_set_wise(at: dt.datetime) -> None:
    with clock.frozen(at):
        result = billing_run()
    assert result.failed == 0


@pytest.mark.parametrize("path", ["one_by_one", "set_wise"])
def test_a_discount_for_two_periods_covers_the_first_renewal_and_not_the_second(
    customer, price, make_code, path
):
    add_card(customer, CARD_OK)
    make_code("TWO", duration="repeating", duration_periods=2, percent_off=Decimal("50"))
    subscription = checkout(customer, price("pro"), "TWO")

    for n in (1, 2):
        if path == "set_wise":
            renew_set_wise(month(n))
        else:
            renew_one_by_one(subscription, month(n))
        subscription.refresh_from_db()

    totals = list(
        Invoice.objects.filter(subscription=subscription)
        .order_by("period_start")
        .values_list("total", flat=True)
    )
    assert totals == [1450, 1450, 2900]
    assert ledger_check().ok


def test_a_renewal_discounted_in_full_is_paid_without_a_charge_on_the_set_wise_path(
    customer, price, make_code
):
    add_card(customer, CARD_OK)
    make_code("FREE", percent_off=Decimal("100"))
    subscription = checkout(customer, price("pro"), "FREE")

    renew_set_wise(month(1))

    renewal = Invoice.objects.get(subscription=subscription, billing_reason="subscription_cycle")
    assert (renewal.status, renewal.total) == ("paid", 0)
    assert lines(renewal) == [("plan_charge", 2900), ("discount", -2900)]
    assert not PaymentAttempt.objects.filter(invoice__subscription=subscription).exists()
    assert ledger_check().ok


def test_staff_apply_a_coupon_to_a_subscription_from_its_next_invoice(customer, price, staff):
    add_card(customer, CARD_OK)
    subscription = checkout(customer, price("pro"), "")
    coupon = services.coupon_create(
        name="Sorry", amount_off=1000, currency="USD", duration="once", actor=staff
    )

    with clock.frozen(START + dt.timedelta(days=3)):
        discount = services.subscription_discount_apply(
            subscription=subscription, coupon=coupon, actor=staff
        )
    renew_set_wise(month(1))
    renew_set_wise(month(2))

    assert discount.starts_at == subscription.current_period_end
    totals = list(
        Invoice.objects.filter(subscription=subscription)
        .order_by("period_start")
        .values_list("total", flat=True)
    )
    assert totals == [2900, 1900, 2900]
    coupon.refresh_from_db()
    assert coupon.times_redeemed == 1
    assert ledger_check().ok


def test_voiding_a_discounted_invoice_takes_back_revenue_and_discount(customer, price, make_code):
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    make_code("SPRING")
    subscription = checkout(customer, price("pro"), "SPRING")  # declined: the invoice stays open
    invoice = Invoice.objects.get(subscription=subscription)
    assert (invoice.status, invoice.total) == ("open", 2320)

    services.subscription_cancel(
        subscription=subscription, at_period_end=False, idempotency_key=new_key()
    )

    assert booked(LedgerAccount.REVENUE) == booked(LedgerAccount.DISCOUNTS) == 0
    assert ledger_check().ok


def test_archived_codes_and_coupons_are_refused_as_expired(customer, price, make_code, staff):
    add_card(customer, CARD_OK)
    promotion = make_code("SPRING")
    services.promotion_code_archive(promotion=promotion, actor=staff)
    with pytest.raises(PromotionCodeRefused) as refused:
        checkout(customer, price("pro"), "SPRING")
    assert refused.value.details["reason"] == "expired"
    assert Coupon.objects.get().times_redeemed == 0
