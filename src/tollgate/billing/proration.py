"""Proration to the second, in integer minor units.

The rounding rule (the only one in Tollgate):

    Every prorated amount rounds in the customer's favour. The charge for time already used rounds
    down; the credit for unused time is the rest of the amount, so it rounds up. A charge for the
    remaining time of a period on a new price rounds down.

In formulas, with ``A`` the amount for the whole period, ``P`` the period's length in whole seconds and
``u`` the seconds already used (``0 <= u <= P``)::

    used   = floor(A * u / P)
    unused = A - used            (= ceil(A * (P - u) / P))
    remaining_charge(B) = floor(B * (P - u) / P)

so ``used + unused == A`` exactly: proration never creates or loses a minor unit, and the customer
never pays for a fraction of one. Seconds are whole seconds (a started second is not yet used).

An upgrade at ``u`` credits the old price's unused part and charges the new price's remaining part.
Both round in the customer's favour, so when the two prices differ by little the credit can exceed
the charge by one minor unit; an upgrade never pays the customer out, so the credit is then capped at
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


def split(*, amount: int, period: Period, at: dt.datetime) -> ProrationSplit:
    """Split ``amount`` (the price of ``period``) at ``at`` by the rounding rule of this module."""
    _check_amount(amount)
    total = period.seconds
    used_seconds = seconds_used(period=period, at=at)
    used = amount * used_seconds // total
    return ProrationSplit(
        amount=amount,
        used=used,
        unused=amount - used,
        used_seconds=used_seconds,
        period_seconds=total,
    )


def remaining_charge(*, amount: int, period: Period, at: dt.datetime) -> int:
    """What the rest of ``period`` from ``at`` costs at ``amount`` per period, rounded down."""
    _check_amount(amount)
    total = period.seconds
    remaining = total - seconds_used(period=period, at=at)
    return amount * remaining // total


@dataclass(frozen=True, slots=True)
class UpgradeProration:
    """The two lines of a mid-period upgrade: a credit for the old price, a charge for the new."""

    credit: int
    debit: int

    @property
    def net(self) -> int:
        return self.debit - self.credit


def upgrade(
    *, old_amount: int, new_amount: int, period: Period, at: dt.datetime
) -> UpgradeProration:
    """Prorate a change from ``old_amount`` to ``new_amount`` (>= old) per ``period`` at ``at``."""
    if new_amount < old_amount:
        raise ValueError("an upgrade does not lower the price")
    credit = split(amount=old_amount, period=period, at=at).unused
    debit = remaining_charge(amount=new_amount, period=period, at=at)
    return UpgradeProration(credit=min(credit, debit), debit=debit)
