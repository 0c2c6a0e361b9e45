"""Amounts at the gateway boundary: Tollgate keeps ISO 4217 minor units; Stripe counts some
currencies in other units (docs.stripe.com/currencies). Every special currency of Stripe's
documentation, both ways, and the refusal of what cannot be sent exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.billing.gateways.stripe.adapter import StripeGateway
from tollgate.billing.gateways.stripe.currencies import (
    STRIPE_CURRENCIES,
    InexactAmount,
    stripe_amount,
    tollgate_amount,
)

ZERO_DECIMAL_AT_BOTH = ["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "PYG", "RWF"]
ZERO_DECIMAL_AT_BOTH += ["VND", "VUV", "XAF", "XOF", "XPF"]
THREE_DECIMAL = ["BHD", "JOD", "KWD", "OMR", "TND"]


@pytest.mark.parametrize("currency", ZERO_DECIMAL_AT_BOTH)
def test_a_zero_decimal_currency_is_sent_in_whole_units_as_tollgate_keeps_it(currency):
    assert stripe_amount(amount=500, currency=currency) == 500
    assert tollgate_amount(amount=500, currency=currency) == 500


def test_1000_isk_is_sent_as_100000_since_stripe_counts_isk_in_hundredths():
    assert stripe_amount(amount=1000, currency="ISK") == 100000
    assert tollgate_amount(amount=100000, currency="ISK") == 1000


def test_ugx_is_sent_with_two_decimals_that_are_always_00():
    assert stripe_amount(amount=5000, currency="UGX") == 500000
    assert tollgate_amount(amount=500000, currency="UGX") == 5000


@pytest.mark.parametrize("currency", ["ISK", "UGX"])
def test_a_fraction_of_a_whole_unit_reported_in_isk_or_ugx_is_refused(currency):
    with pytest.raises(InexactAmount):
        tollgate_amount(amount=100050, currency=currency)


def test_mga_is_zero_decimal_at_stripe_while_tollgate_keeps_two_decimals():
    assert stripe_amount(amount=100000, currency="MGA") == 1000
    assert tollgate_amount(amount=1000, currency="MGA") == 100000


def test_mga_with_a_fraction_cannot_be_sent_exactly():
    with pytest.raises(InexactAmount, match="MGA"):
        stripe_amount(amount=100050, currency="mga")


@pytest.mark.parametrize("currency", THREE_DECIMAL)
def test_a_three_decimal_amount_ending_in_0_is_sent_unchanged(currency):
    assert stripe_amount(amount=5120, currency=currency) == 5120
    assert tollgate_amount(amount=5120, currency=currency) == 5120


@pytest.mark.parametrize("currency", THREE_DECIMAL)
def test_a_three_decimal_amount_not_ending_in_0_is_refused(currency):
    with pytest.raises(InexactAmount, match=r"0\.010"):
        stripe_amount(amount=5125, currency=currency)


@pytest.mark.parametrize("currency", ["HUF", "TWD"])
def test_huf_and_twd_are_charged_with_two_decimals(currency):
    # Only Stripe's payouts are in whole units of these; charges take two decimals.
    assert stripe_amount(amount=1050, currency=currency) == 1050
    assert tollgate_amount(amount=1050, currency=currency) == 1050


@pytest.mark.parametrize("currency", ["USD", "EUR", "GBP", "usd"])
def test_two_decimal_currencies_are_sent_unchanged(currency):
    assert stripe_amount(amount=1999, currency=currency) == 1999
    assert tollgate_amount(amount=1999, currency=currency) == 1999


def test_a_three_decimal_currency_stripe_counts_with_two_decimals_loses_nothing():
    # IQD has three decimals in ISO 4217; Stripe lists it with none of its special currencies.
    assert stripe_amount(amount=1230, currency="IQD") == 123
    with pytest.raises(InexactAmount):
        stripe_amount(amount=1235, currency="IQD")


def test_the_table_holds_every_special_currency_of_stripes_documentation():
    documented = {*ZERO_DECIMAL_AT_BOTH, "MGA", *THREE_DECIMAL, "ISK", "HUF", "TWD", "UGX"}
    assert set(STRIPE_CURRENCIES) == documented


@given(
    currency=st.sampled_from(sorted({*STRIPE_CURRENCIES, "USD", "IQD", "UYI"})),
    amount=st.integers(min_value=0, max_value=10**12),
)
def test_what_can_be_sent_comes_back_as_the_same_amount(currency, amount):
    gateway = StripeGateway()
    try:
        sent = stripe_amount(amount=amount, currency=currency)
    except InexactAmount:
        assert not gateway.can_charge_exactly(amount=amount, currency=currency)
        return
    assert gateway.can_charge_exactly(amount=amount, currency=currency)
    assert tollgate_amount(amount=sent, currency=currency) == amount


def test_the_sandbox_charges_any_amount_exactly():
    assert SandboxGateway().can_charge_exactly(amount=5125, currency="KWD")
    assert SandboxGateway().can_charge_exactly(amount=100050, currency="MGA")


@pytest.mark.parametrize(
    ("currency", "step"),
    # MGA: Stripe takes whole ariary (Tollgate keeps hundredths); KWD: the last of three decimals
    # must be 0; JPY: whole yen at both; ISK: whole kronur at both (Stripe's 00 decimals aside).
    [("MGA", 100), ("KWD", 10), ("JPY", 1), ("ISK", 1), ("UGX", 1), ("USD", 1)],
)
def test_the_charge_step_is_the_smallest_amount_stripe_takes_exactly(currency, step):
    gateway = StripeGateway()
    assert gateway.charge_step(currency=currency) == step
    for multiple in (step, 7 * step, 123 * step):
        assert gateway.can_charge_exactly(amount=multiple, currency=currency)
    if step > 1:
        assert not gateway.can_charge_exactly(amount=step + 1, currency=currency)
        assert not gateway.can_charge_exactly(amount=step - 1, currency=currency)


@given(
    currency=st.sampled_from(sorted({*STRIPE_CURRENCIES, "USD", "IQD"})),
    amount=st.integers(min_value=0, max_value=10**12),
)
def test_exactly_the_multiples_of_the_charge_step_can_be_charged(currency, amount):
    gateway = StripeGateway()
    step = gateway.charge_step(currency=currency)
    assert gateway.can_charge_exactly(amount=amount, currency=currency) == (amount % step == 0)


def test_the_sandbox_charges_in_steps_of_one_minor_unit():
    assert SandboxGateway().charge_step(currency="KWD") == 1
    assert SandboxGateway().charge_step(currency="MGA") == 1
