"""Proration to the second, in integer minor units, in steps the gateway can charge.

The rounding rule (the only one in Tollgate):

    Every prorated amount is a whole number of the gateway's charge steps and rounds in the
    customer's favour. The credit for unused time rounds up (and the charge for time already used
    is the rest of the amount, so it rounds down). A charge for the remaining time of a period on
    a new price rounds down.

The charge step ``s`` is the smallest amount of the currency, in Tollgate's minor units, that the
configured gateway charges exactly (``Gateway.charge_step``): 1 almost everywhere; at Stripe 100
for MGA (whole ariary) and 10 for the three-decimal currencies (BHD JOD KWD OMR TND). In formulas,
with ``A`` the amount for the whole period, ``P`` the period's length in whole seconds and ``u`` the
seconds already used (``0 <= u <= P``)::

    unused = min(A, ceil(A * (P - u) / (P * s)) * s)
    used   = A - unused          (= floor(A * u / (P * s)) * s when A is a multiple of s)
    remaining_charge(B) = floor(B * (P - u) / (P * s)) * s

so ``used + unused == A`` exactly: proration never creates or loses a minor unit, the customer never
pays for a fraction of a step, and every prorated amount of a price (prices are multiples of the
step: the catalog refuses a price the gateway cannot charge exactly) can be charged or refunded as
it is. Seconds are whole seconds (a started second is not yet used). The invoice lines carry these
amounts and the ledger posts the invoice lines, so the two always agree.

An upgrade at ``u`` credits the old price's unused part and charges the new price's remaining part.
Both round in the customer's favour, so when the two prices differ by little the credit can exceed
the charge by one step; an upgrade never pays the customer out, so the credit is then capped at
the charge (the net is zero).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tollgate.billing.periods import Period, whole_seconds


@dataclass(frozen=True, slots=True)
class ProrationSplit:
    """One period's amount split at a moment into the part used and the part not yet used."""

    amount: int
    used: int
    unused: int
    used_seconds: int
    period_seconds: int


def _check_amount(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("amounts are integers in minor units")
    if amount < 0:
        raise ValueError("a prorated amount cannot be negative")


def seconds_used(*, period: Period, at: dt.datetime) -> int:
    """Whole seconds of ``period`` elapsed at ``at``, clamped to the period."""
    if at <= period.start:
        return 0
    if at >= period.end:
        return period.seconds
    return whole_seconds(at - period.start)


def _check_step(step: int) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError("a charge step is a positive number of minor units")


def split(*, amount: int, period: Period, at: dt.datetime, step: int = 1) -> ProrationSplit:
    """Split ``amount`` (the price of ``period``) at ``at`` by the rounding rule of this module, in
    charge steps of ``step``."""
    _check_amount(amount)
    _check_step(step)
    total = period.seconds
    used_seconds = seconds_used(period=period, at=at)
    unused = min(amount, -(-amount * (total - used_seconds) // (total * step)) * step)
    return ProrationSplit(
        amount=amount,
        used=amount - unused,
        unused=unused,
        used_seconds=used_seconds,
        period_seconds=total,
    )


def remaining_charge(*, amount: int, period: Period, at: dt.datetime, step: int = 1) -> int:
    """What the rest of ``period`` from ``at`` costs at ``amount`` per period, rounded down to a
    multiple of ``step``."""
    _check_amount(amount)
    _check_step(step)
    total = period.seconds
    remaining = total - seconds_used(period=period, at=at)
    return amount * remaining // (total * step) * step


@dataclass(frozen=True, slots=True)
class UpgradeProration:
    """The two lines of a mid-period upgrade: a credit for the old price, a charge for the new."""

    credit: int
    debit: int

    @property
    def net(self) -> int:
        return self.debit - self.credit


def upgrade(
    *, old_amount: int, new_amount: int, period: Period, at: dt.datetime, step: int = 1
) -> UpgradeProration:
    """Prorate a change from ``old_amount`` to ``new_amount`` (>= old) per ``period`` at ``at``, in
    charge steps of ``step``."""
    if new_amount < old_amount:
        raise ValueError("an upgrade does not lower the price")
    credit = split(amount=old_amount, period=period, at=at, step=step).unused
    debit = remaining_charge(amount=new_amount, period=period, at=at, step=step)
    return UpgradeProration(credit=min(credit, debit), debit=debit)
