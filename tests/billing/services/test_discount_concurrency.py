"""Redemptions are counted race-free: concurrent checkouts on PostgreSQL, real threads on their
own connections."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from tests import concurrency
from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.billing import services
from tollgate.billing.errors import PromotionCodeRefused
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Coupon, Discount, PromotionCode, Subscription

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="concurrent requests need PostgreSQL: SQLite serializes every writer",
    ),
]
CHECKOUTS = 20
LIMIT = 5


@pytest.mark.parametrize("limited", ["code", "coupon"])
def test_twenty_concurrent_checkouts_with_a_code_limited_to_five_redeem_it_exactly_five_times(
    make_customer, price, staff, limited
):
    coupon = services.coupon_create(
        name="Launch",
        percent_off=Decimal("25"),
        duration="once",
        max_redemptions=LIMIT if limited == "coupon" else None,
        actor=staff,
    )
    services.promotion_code_create(
        coupon=coupon,
        code="LAUNCH",
        max_redemptions=LIMIT if limited == "code" else None,
        actor=staff,
    )
    customers = [make_customer(email=f"racer{index}@example.org") for index in range(CHECKOUTS)]
    for customer in customers:
        add_card(customer, CARD_OK)
    pro = price("pro")

    outcomes = concurrency.race(
        lambda index: services.subscription_start(
            customer=customers[index],
            price=pro,
            idempotency_key=new_key(),
            promotion_code="launch",
        ),
        CHECKOUTS,
        timeout=120,
    )

    started = [o for o in outcomes if isinstance(o, Subscription)]
    refused = [o for o in outcomes if not isinstance(o, Subscription)]
    assert len(started) == LIMIT, outcomes
    assert all(
        isinstance(o, PromotionCodeRefused) and o.details["reason"] == "exhausted" for o in refused
    ), refused
    assert PromotionCode.objects.get().times_redeemed == LIMIT
    assert Coupon.objects.get().times_redeemed == LIMIT
    assert Discount.objects.count() == Subscription.objects.count() == LIMIT
    assert ledger_check().ok
