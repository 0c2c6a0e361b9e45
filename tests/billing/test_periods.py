import calendar
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollgate.billing.periods import (
    Period,
    interval_months,
    period_after,
    period_at,
    period_number,
    shift_months,
    whole_seconds,
)

UTC = dt.UTC

anchors = st.datetimes(
    min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2200, 12, 31), timezones=st.just(UTC)
)
lengths = st.integers(min_value=1, max_value=36)


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_month_end_anchor_clamps_and_comes_back():
    anchor = at(2024, 1, 31, 9, 30)
    ends = [period_number(anchor=anchor, months=1, index=i).end for i in range(4)]
    assert ends == [
        at(2024, 2, 29, 9, 30),
        at(2024, 3, 31, 9, 30),
        at(2024, 4, 30, 9, 30),
        at(2024, 5, 31, 9, 30),
    ]


def test_month_end_anchor_in_a_common_year_lands_on_february_28():
    assert shift_months(at(2025, 1, 31), 1) == at(2025, 2, 28)
    assert shift_months(at(2025, 1, 31), 2) == at(2025, 3, 31)


def test_leap_day_yearly_anchor_returns_to_the_29th_in_leap_years():
    anchor = at(2024, 2, 29, 12)
    months = interval_months(interval="year", interval_count=1)
    starts = [period_number(anchor=anchor, months=months, index=i).start for i in range(5)]
    assert starts == [
        at(2024, 2, 29, 12),
        at(2025, 2, 28, 12),
        at(2026, 2, 28, 12),
        at(2027, 2, 28, 12),
        at(2028, 2, 29, 12),
    ]


def test_interval_months_for_months_and_years_with_counts():
    assert interval_months(interval="month", interval_count=1) == 1
    assert interval_months(interval="month", interval_count=3) == 3
    assert interval_months(interval="year", interval_count=2) == 24


@pytest.mark.parametrize(("interval", "count"), [("week", 1), ("month", 0)])
def test_interval_months_refuses_unknown_intervals_and_zero_counts(interval, count):
    with pytest.raises(ValueError, match="interval"):
        interval_months(interval=interval, interval_count=count)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="aware"):
        shift_months(dt.datetime(2024, 1, 1), 1)
    with pytest.raises(ValueError, match="aware"):
        period_at(anchor=at(2024, 1, 1), months=1, at=dt.datetime(2024, 2, 1))


def test_period_must_last_at_least_one_second():
    with pytest.raises(ValueError, match="one second"):
        Period(start=at(2024, 1, 1), end=at(2024, 1, 1))
    with pytest.raises(ValueError, match="one month"):
        period_number(anchor=at(2024, 1, 1), months=0, index=0)


def test_period_at_refuses_a_moment_before_the_anchor():
    with pytest.raises(ValueError, match="before the anchor"):
        period_at(anchor=at(2024, 3, 1), months=1, at=at(2024, 2, 1))


def test_period_at_steps_back_when_the_day_of_month_is_not_reached_yet():
    period = period_at(anchor=at(2024, 1, 31), months=1, at=at(2024, 3, 15))
    assert period == Period(start=at(2024, 2, 29), end=at(2024, 3, 31))
    assert period_after(anchor=at(2024, 1, 31), months=1, period=period).end == at(2024, 4, 30)


def test_whole_seconds_ignores_microseconds():
    assert whole_seconds(dt.timedelta(days=1, seconds=5, microseconds=999_999)) == 86_405


@given(anchor=anchors, months=lengths, index=st.integers(min_value=0, max_value=400))
def test_every_boundary_keeps_the_anchor_day_clamped_and_the_time_of_day(anchor, months, index):
    period = period_number(anchor=anchor, months=months, index=index)
    for boundary in (period.start, period.end):
        last_day = calendar.monthrange(boundary.year, boundary.month)[1]
        assert boundary.day == min(anchor.day, last_day)
        assert boundary.timetz() == anchor.timetz()
    assert (period.end.year * 12 + period.end.month) - (
        period.start.year * 12 + period.start.month
    ) == months


@given(anchor=anchors, months=lengths, index=st.integers(min_value=0, max_value=400))
def test_consecutive_periods_tile_the_timeline_without_gaps(anchor, months, index):
    period = period_number(anchor=anchor, months=months, index=index)
    following = period_number(anchor=anchor, months=months, index=index + 1)
    assert period.start < period.end == following.start
    assert period_after(anchor=anchor, months=months, period=period) == following


@given(
    anchor=anchors,
    months=lengths,
    offset=st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=20_000)),
)
def test_period_at_contains_the_moment_and_belongs_to_the_schedule(anchor, months, offset):
    moment = anchor + offset
    period = period_at(anchor=anchor, months=months, at=moment)
    assert period.contains(moment)
    elapsed = (period.start.year * 12 + period.start.month) - (anchor.year * 12 + anchor.month)
    assert elapsed % months == 0
    assert period == period_number(anchor=anchor, months=months, index=elapsed // months)
