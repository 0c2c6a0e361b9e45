"""The discount arithmetic: a percentage rounds up (in the customer's favour) in minor units,
whatever the currency's exponent; a fixed amount never takes an amount below zero."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollgate.billing.discounts import amount_off, code_normalize
from tollgate.billing.models import Coupon


def percent(value: str) -> Coupon:
    return Coupon(name="p", percent_off=Decimal(value), duration="once")


def fixed(amount: int, currency: str) -> Coupon:
    return Coupon(name="f", amount_off=amount, currency=currency, duration="once")


@pytest.mark.parametrize(
    ("coupon_percent", "amount", "currency", "expected"),
    [
        ("10", 2900, "USD", 290),
        ("33.33", 1000, "JPY", 334),  # 333.3 yen: rounded up
        ("15", 1999, "KWD", 300),  # 299.85 fils: rounded up
        ("12.5", 999, "EUR", 125),  # 124.875 cents: rounded up
        ("100", 2900, "USD", 2900),
        ("0.01", 1, "JPY", 1),  # never below one minor unit off a positive amount
    ],
)
def test_a_percentage_off_rounds_up_in_minor_units_of_any_currency(
    coupon_percent, amount, currency, expected
):
    assert amount_off(coupon=percent(coupon_percent), amount=amount, currency=currency) == expected


@pytest.mark.parametrize(
    ("coupon_percent", "amount", "step", "expected"),
    [
        ("15", 1990, 10, 300),  # KWD at Stripe: 298.5 fils rounds up to 300, leaving 1690
        ("33.33", 1000, 10, 340),
        ("10", 250_000, 100, 25_000),  # MGA at Stripe: whole ariary
        ("12.5", 9900, 100, 1300),
        ("100", 1990, 10, 1990),
    ],
)
def test_a_percentage_off_rounds_up_to_the_gateways_charge_step(
    coupon_percent, amount, step, expected
):
    off = amount_off(coupon=percent(coupon_percent), amount=amount, currency="KWD", step=step)
    assert off == expected
    assert (amount - off) % step == 0


def test_a_fixed_amount_applies_in_its_own_currency_only_and_never_below_zero():
    assert amount_off(coupon=fixed(500, "USD"), amount=2900, currency="USD") == 500
    assert amount_off(coupon=fixed(5000, "USD"), amount=2900, currency="USD") == 2900
    assert amount_off(coupon=fixed(500, "USD"), amount=2900, currency="EUR") == 0


@given(
    hundredths=st.integers(min_value=1, max_value=10_000),
    amount=st.integers(min_value=0, max_value=10**12),
)
def test_a_percentage_takes_the_exact_share_rounded_up_and_at_most_the_amount(hundredths, amount):
    coupon = percent(str(Decimal(hundredths) / 100))
    off = amount_off(coupon=coupon, amount=amount, currency="USD")
    assert 0 <= off <= amount
    # off is the smallest whole number at or above amount * p / 100
    assert off * 10_000 >= amount * hundredths > (off - 1) * 10_000 or off == 0 == amount


def test_codes_match_without_regard_to_case_or_surrounding_spaces():
    assert code_normalize("  spring-25 ") == "SPRING-25"
