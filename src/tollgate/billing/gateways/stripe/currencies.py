"""Amounts at the Stripe boundary: Tollgate keeps ISO 4217 minor units (``core.money``); Stripe's
API counts some currencies in other units. Pure functions, both ways, that never round: an
amount Stripe cannot take exactly raises :class:`InexactAmount`.

Stripe's documentation (docs.stripe.com/currencies) says:

- Currencies are two-decimal unless listed below.
- Zero-decimal: BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF VND VUV XAF XOF XPF (MGA has two
  decimals in ISO 4217, so 1,000.00 MGA is 100000 in Tollgate and 1000 at Stripe).
- Three-decimal: BHD JOD KWD OMR TND; Stripe's payment partners need the last digit to be 0
  (5.124 KWD cannot be charged: 5.120 or 5.130 can).
- Special cases: ISK and UGX are zero-decimal but, for backwards compatibility, are sent as
  two-decimal amounts whose decimals are always 00 (5 ISK is 500). HUF and TWD are charged as
  two-decimal amounts; only Stripe's payouts are in whole units (Tollgate makes no payouts).
"""

from __future__ import annotations

import math

from tollgate.core.money import currency_exponent

# Currency -> (decimals of Stripe's amounts, the step they must be a multiple of). Any other
# currency is (2, 1).
_ZERO_DECIMAL = ("BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "VND", "VUV")
_ZERO_DECIMAL_CFA = ("XAF", "XOF", "XPF")
_THREE_DECIMAL = ("BHD", "JOD", "KWD", "OMR", "TND")
STRIPE_CURRENCIES: dict[str, tuple[int, int]] = {
    **dict.fromkeys((*_ZERO_DECIMAL, *_ZERO_DECIMAL_CFA), (0, 1)),
    **dict.fromkeys(_THREE_DECIMAL, (3, 10)),
    "ISK": (2, 100),
    "UGX": (2, 100),
    "HUF": (2, 1),
    "TWD": (2, 1),
}


class InexactAmount(ValueError):
    """An amount that cannot be carried across the Stripe boundary without rounding."""


def _units(currency: str) -> tuple[str, int, int, int]:
    code = currency.upper()
    decimals, step = STRIPE_CURRENCIES.get(code, (2, 1))
    return code, currency_exponent(code), decimals, step


def _minor(amount: int, exponent: int) -> str:
    """``5125`` with 3 decimals -> ``"5.125"``: an amount for a message, exactly."""
    if not exponent:
        return str(amount)
    whole, fraction = divmod(abs(amount), 10**exponent)
    return f"{'-' if amount < 0 else ''}{whole}.{fraction:0{exponent}d}"


def stripe_amount(*, amount: int, currency: str) -> int:
    """Tollgate's ``amount`` (minor units) of ``currency`` as Stripe's API amount; raises
    ``InexactAmount`` when Stripe cannot take it exactly."""
    code, exponent, decimals, step = _units(currency)
    if decimals >= exponent:
        sent = amount * 10 ** (decimals - exponent)
    else:
        sent, rest = divmod(amount, 10 ** (exponent - decimals))
        if rest:
            raise InexactAmount(
                f"Stripe charges {code} in whole multiples of {_minor(1, decimals)} {code}: "
                f"{_minor(amount, exponent)} {code} cannot be charged exactly."
            )
    if sent % step:
        raise InexactAmount(
            f"Stripe charges {code} in whole multiples of {_minor(step, decimals)} {code}: "
            f"{_minor(amount, exponent)} {code} cannot be charged exactly."
        )
    return sent


def tollgate_amount(*, amount: int, currency: str) -> int:
    """Stripe's API ``amount`` of ``currency`` in Tollgate's minor units; raises
    ``InexactAmount`` for a fraction Tollgate's currency does not have."""
    code, exponent, decimals, _ = _units(currency)
    if decimals <= exponent:
        return amount * 10 ** (exponent - decimals)
    kept, rest = divmod(amount, 10 ** (decimals - exponent))
    if rest:
        raise InexactAmount(
            f"Stripe reported {_minor(amount, decimals)} {code}, a fraction {code} does not have."
        )
    return kept


def charge_step(*, currency: str) -> int:
    """The smallest amount of ``currency`` (Tollgate's minor units) Stripe can charge exactly: the
    amounts it can charge are exactly the multiples of it (MGA: 100, whole ariary; KWD: 10)."""
    _, exponent, decimals, step = _units(currency)
    if decimals < exponent:
        return 10 ** (exponent - decimals) * step
    scale = 10 ** (decimals - exponent)
    return step // math.gcd(step, scale)


def stripe_chargeable(*, amount: int, currency: str) -> bool:
    try:
        stripe_amount(amount=amount, currency=currency)
    except InexactAmount:
        return False
    return True
