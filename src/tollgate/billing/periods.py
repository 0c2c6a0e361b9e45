"""Billing-period arithmetic: boundaries keep the anchor's day and time and clamp at month end.

Every boundary is computed from the subscription's anchor, never from the previous boundary, so a
short month does not shift the rest of the schedule: an anchor on 31 January gives boundaries on
28 (or 29) February, 31 March, 30 April, 31 May and so on. A year is twelve months, so an anchor on
29 February falls on 28 February in common years and comes back to the 29th in leap years.

All datetimes are aware and in UTC (``core.clock``); a naive value is a programming error.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

from tollgate.catalog.models import Price


def _require_aware(moment: dt.datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")


def interval_months(*, interval: str, interval_count: int) -> int:
    """The length of one billing interval in months (a year is twelve)."""
    if interval_count < 1:
        raise ValueError("interval_count must be at least 1")
    if interval == Price.Interval.MONTH:
        return interval_count
    if interval == Price.Interval.YEAR:
        return 12 * interval_count
    raise ValueError(f"unknown billing interval {interval!r}")


def shift_months(anchor: dt.datetime, months: int) -> dt.datetime:
    """``anchor`` moved by ``months`` calendar months, its day clamped to the target month's length."""
    _require_aware(anchor, "anchor")
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month_index = divmod(index, 12)
    month = month_index + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def whole_seconds(delta: dt.timedelta) -> int:
    """Whole seconds in ``delta``, rounded down (microseconds never count); exact, without floats."""
    return delta.days * 86_400 + delta.seconds


@dataclass(frozen=True, slots=True)
class Period:
    """A billing period: ``start`` inclusive, ``end`` exclusive."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        _require_aware(self.start, "start")
        _require_aware(self.end, "end")
        if whole_seconds(self.end - self.start) < 1:
            raise ValueError("a period must last at least one second")

    @property
    def seconds(self) -> int:
        return whole_seconds(self.end - self.start)

    def contains(self, moment: dt.datetime) -> bool:
        return self.start <= moment < self.end


def period_number(*, anchor: dt.datetime, months: int, index: int) -> Period:
    """The ``index``-th period (0 is the one starting at ``anchor``) of ``months`` months each."""
    if months < 1:
        raise ValueError("a period is at least one month long")
    return Period(
        start=shift_months(anchor, index * months), end=shift_months(anchor, (index + 1) * months)
    )


def period_at(*, anchor: dt.datetime, months: int, at: dt.datetime) -> Period:
    """The period of the schedule starting at ``anchor`` that contains ``at`` (``at >= anchor``)."""
    _require_aware(at, "at")
    if at < anchor:
        raise ValueError("at is before the anchor: the schedule has not started")
    elapsed_months = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    # The calendar-month difference is at most one period past the answer; step back if needed.
    index = elapsed_months // months
    period = period_number(anchor=anchor, months=months, index=index)
    while period.start > at:
        index -= 1
        period = period_number(anchor=anchor, months=months, index=index)
    return period


def period_after(*, anchor: dt.datetime, months: int, period: Period) -> Period:
    """The period that follows ``period`` in the schedule starting at ``anchor``."""
    return period_at(anchor=anchor, months=months, at=period.end)


def price_months(price: Price) -> int:
    """How many months one period of ``price`` lasts."""
    return interval_months(interval=price.interval, interval_count=price.interval_count)
