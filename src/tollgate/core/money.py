"""Money: an integer amount in minor units and an ISO 4217 currency code. No floats, ever."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# ISO 4217 minor-unit exponents that differ from 2 (the rest use 2).
_EXPONENTS = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}
_SYMBOLS = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "CAD": "CA$",
    "AUD": "A$",
    "CHF": "CHF ",
}


def currency_exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def validate_currency(currency: str) -> str:
    code = currency.strip().upper()
    if len(code) != 3 or not code.isalpha() or not code.isascii():
        raise ValueError(f"{currency!r} is not an ISO 4217 currency code")
    return code


@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TypeError("Money.amount must be an int in minor units")
        object.__setattr__(self, "currency", validate_currency(self.currency))

    def _check(self, other: Money) -> None:
        if not isinstance(other, Money) or other.currency != self.currency:
            raise ValueError("cannot combine amounts in different currencies")

    def __add__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def format(self) -> str:
        """``Money(1999, "USD").format()`` -> ``"$19.99"``; exact, from integers."""
        exponent = currency_exponent(self.currency)
        sign = "-" if self.amount < 0 else ""
        whole, fraction = divmod(abs(self.amount), 10**exponent)
        number = f"{whole:,}" + (f".{fraction:0{exponent}d}" if exponent else "")
        symbol = _SYMBOLS.get(self.currency)
        return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {self.currency}"

    def __str__(self) -> str:
        return self.format()


def money_from_major_units(text: str, currency: str) -> Money:
    """``money_from_major_units("12.50", "USD")`` -> ``Money(1250, "USD")``: an amount typed in
    major units, parsed exactly (``Decimal``, never a float) to the currency's minor units.

    Accepts digits with at most the currency's number of decimals (``"12"``, ``"12.5"``,
    ``"12.50"``; ``"1,250.00"`` with thousands separators); refuses anything else with a
    ``ValueError`` whose message says what to type: a sign, an exponent, more decimals than the
    currency has (``"12.505"`` in USD, ``"5.5"`` in JPY), or not a number at all.
    """
    code = validate_currency(currency)
    exponent = currency_exponent(code)
    cleaned = text.strip().replace(",", "")
    if cleaned.startswith("-"):
        raise ValueError("Enter an amount above zero.")
    if not cleaned or not all(
        (char.isascii() and char.isdigit()) or char == "." for char in cleaned
    ):
        raise ValueError("Enter an amount as a number, like 12.50.")
    try:
        value = Decimal(cleaned)
    except InvalidOperation as exc:
        raise ValueError("Enter an amount as a number, like 12.50.") from exc
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        if not exponent:
            raise ValueError(f"{code} amounts are whole numbers, without decimals.")
        raise ValueError(f"{code} amounts have at most {exponent} decimal places.")
    return Money(int(minor), code)


# Whether the configured payment gateway can charge an amount exactly (``Gateway.can_charge_exactly``;
# Stripe counts a few currencies in larger steps). Billing registers it when it starts, so the
# catalog, which billing builds on, can refuse a price that could not be charged.
_exact_charge_checks: list[Callable[[Money], bool]] = []


def exact_charge_check_register(check: Callable[[Money], bool]) -> None:
    if check not in _exact_charge_checks:
        _exact_charge_checks.append(check)


def chargeable_exactly(money: Money) -> bool:
    return all(check(money) for check in _exact_charge_checks)
