"""Amounts typed in major units become exact minor units in the currency's own exponent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollgate.core.money import Money, money_from_major_units


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.50", "USD", 1250),
        ("12.5", "USD", 1250),
        ("12", "USD", 1200),
        (" 0.01 ", "USD", 1),
        ("1,250.00", "USD", 125000),
        ("0.10", "EUR", 10),
        ("500", "JPY", 500),
        ("1.234", "KWD", 1234),
        ("1.2", "KWD", 1200),
        ("0", "USD", 0),
    ],
)
def test_major_units_are_parsed_exactly_to_minor_units(text, currency, minor):
    assert money_from_major_units(text, currency) == Money(minor, currency)


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("12.505", "USD", "USD amounts have at most 2 decimal places."),
        ("5.5", "JPY", "JPY amounts are whole numbers, without decimals."),
        ("1.2345", "KWD", "KWD amounts have at most 3 decimal places."),
        ("-1", "USD", "Enter an amount above zero."),
        ("+1", "USD", "Enter an amount as a number, like 12.50."),
        ("1e3", "USD", "Enter an amount as a number, like 12.50."),
        ("NaN", "USD", "Enter an amount as a number, like 12.50."),
        ("Infinity", "USD", "Enter an amount as a number, like 12.50."),
        ("1.2.3", "USD", "Enter an amount as a number, like 12.50."),
        ("١٢", "USD", "Enter an amount as a number, like 12.50."),
        ("", "USD", "Enter an amount as a number, like 12.50."),
        ("$12", "USD", "Enter an amount as a number, like 12.50."),
    ],
)
def test_anything_else_is_refused_with_what_to_type(text, currency, message):
    with pytest.raises(ValueError, match=f"^{message.replace('.', '[.]')}$"):
        money_from_major_units(text, currency)


@given(st.integers(min_value=0, max_value=10**15), st.sampled_from(["USD", "JPY", "KWD"]))
def test_formatting_and_parsing_round_trip(minor, currency):
    shown = Money(minor, currency).format()
    number = shown.lstrip("$¥").removesuffix(f" {currency}")
    assert money_from_major_units(number, currency) == Money(minor, currency)
