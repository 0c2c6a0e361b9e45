"""A checkout whose first payment never went through does not use up its promotion code: when the
subscription expires unpaid, its discount ends and gives its redemption back, and a first-time-only
code still counts the customer as new."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.billing.conftest import CARD_INSUFFICIENT_FUNDS, CARD_OK, add_card, new_key
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.models import Coupon, Discount, Invoice, PromotionCode
from tollgate.core import clock

pytestmark = pytest.mark.django_db
START = dt.datetime(2025, 3, 3, 9, tzinfo=dt.UTC)
EXPIRED = START + dt.timedelta(hours=23)


@pytest.fixture
def once_only(staff) -> PromotionCode:
    coupon = services.coupon_create(
        name="Launch",
        percent_off=Decimal("50"),
        duration="once",
        max_redemptions=1,
        first_time_only=True,
        actor=staff,
    )
    return services.promotion_code_create(coupon=coupon, code="LAUNCH", actor=staff)


def checkout(customer, price, at):
    with clock.frozen(at):
        return services.subscription_start(
            customer=customer,
            price=price("pro"),
            trial=False,
            idempotency_key=new_key(),
            promotion_code="launch",
        )


def test_an_expired_checkout_gives_its_redemption_back(customer, price, once_only):
    add_card(customer, CARD_INSUFFICIENT_FUNDS)
    failed = checkout(customer, price, START)
    assert failed.status == "incomplete"
    assert PromotionCode.objects.get().times_redeemed == 1
    with clock.frozen(EXPIRED):
        billing_run(until=EXPIRED)
    failed.refresh_from_db()
    assert failed.status == "incomplete_expired"
    assert PromotionCode.objects.get().times_redeemed == Coupon.objects.get().times_redeemed == 0
    assert Discount.objects.get(subscription=failed).ended_at == EXPIRED
    assert AuditEvent.objects.filter(action="billing.discount_redemption_released").count() == 1

    # The same customer, with a working card: still a first-time customer, and the code is free.
    add_card(customer, CARD_OK)
    retried = checkout(customer, price, EXPIRED + dt.timedelta(hours=1))
    assert retried.status == "active"
    assert Invoice.objects.get(subscription=retried).total == 1450
    assert PromotionCode.objects.get().times_redeemed == 1


def test_a_paid_checkout_keeps_its_redemption(customer, price, once_only):
    add_card(customer, CARD_OK)
    checkout(customer, price, START)
    with clock.frozen(EXPIRED):
        billing_run(until=EXPIRED)
    assert PromotionCode.objects.get().times_redeemed == 1
    assert Discount.objects.get().ended_at is None
