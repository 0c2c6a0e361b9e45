import datetime as dt
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollgate.billing.periods import Period, period_number
from tollgate.billing.proration import remaining_charge, seconds_used, split, upgrade

UTC = dt.UTC
amounts = st.integers(min_value=0, max_value=10**12)
periods = st.builds(
    lambda anchor, months, index: period_number(anchor=anchor, months=months, index=index),
    anchor=st.datetimes(
        min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    months=st.integers(min_value=1, max_value=36),
    index=st.integers(min_value=0, max_value=24),
)


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


APRIL = Period(start=at(2024, 4, 1), end=at(2024, 5, 1))  # 30 days = 2,592,000 s


def test_half_way_through_splits_evenly():
    result = split(amount=3000, period=APRIL, at=at(2024, 4, 16))
    assert (result.used, result.unused) == (1500, 1500)
    assert result.period_seconds == 2_592_000


def test_a_fraction_of_a_minor_unit_is_never_charged():
    # One second into April: 999 * 1 / 2,592,000 used -> 0 charged, the whole amount credited.
    result = split(amount=999, period=APRIL, at=at(2024, 4, 1, 0, 0, 1))
    assert (result.used, result.unused) == (0, 999)
    # A third of the way: 1000 / 3 = 333.33 used -> 333 charged, 667 credited.
    result = split(amount=1000, period=APRIL, at=at(2024, 4, 11))
    assert (result.used, result.unused) == (333, 667)


def test_remaining_charge_rounds_down():
    assert remaining_charge(amount=1000, period=APRIL, at=at(2024, 4, 11)) == 666
    assert remaining_charge(amount=2900, period=APRIL, at=at(2024, 3, 1)) == 2900
    assert remaining_charge(amount=2900, period=APRIL, at=at(2024, 6, 1)) == 0


def test_seconds_used_is_clamped_to_the_period_and_ignores_a_started_second():
    assert seconds_used(period=APRIL, at=at(2024, 3, 1)) == 0
    assert seconds_used(period=APRIL, at=at(2024, 5, 2)) == APRIL.seconds
    assert (
        seconds_used(period=APRIL, at=at(2024, 4, 1, 0, 0, 1) + dt.timedelta(microseconds=900_000))
        == 1
    )


@pytest.mark.parametrize("amount", [-1, True, Fraction(21, 2)])
def test_amounts_must_be_non_negative_integers(amount):
    with pytest.raises((TypeError, ValueError)):
        split(amount=amount, period=APRIL, at=at(2024, 4, 2))
    with pytest.raises((TypeError, ValueError)):
        remaining_charge(amount=amount, period=APRIL, at=at(2024, 4, 2))


@given(amount=amounts, period=periods, fraction=st.fractions(min_value=0, max_value=1))
def test_split_never_creates_or_loses_a_minor_unit(amount, period, fraction):
    moment = period.start + dt.timedelta(seconds=int(period.seconds * fraction))
    result = split(amount=amount, period=period, at=moment)
    assert result.used + result.unused == amount
    assert 0 <= result.used <= amount
    # In the customer's favour: used never exceeds the exact share, and misses it by under one unit.
    exact_used_times_period = amount * result.used_seconds
    assert result.used * result.period_seconds <= exact_used_times_period
    assert exact_used_times_period < (result.used + 1) * result.period_seconds


@given(amount=amounts, period=periods, first=st.fractions(0, 1), second=st.fractions(0, 1))
def test_later_moments_never_credit_more(amount, period, first, second):
    early, late = sorted([first, second])
    credit_early = split(
        amount=amount,
        period=period,
        at=period.start + dt.timedelta(seconds=int(period.seconds * early)),
    ).unused
    credit_late = split(
        amount=amount,
        period=period,
        at=period.start + dt.timedelta(seconds=int(period.seconds * late)),
    ).unused
    assert credit_late <= credit_early


@given(amount=amounts, period=periods, fraction=st.fractions(min_value=0, max_value=1))
def test_remaining_charge_never_exceeds_the_unused_credit_for_the_same_amount(
    amount, period, fraction
):
    moment = period.start + dt.timedelta(seconds=int(period.seconds * fraction))
    charge = remaining_charge(amount=amount, period=period, at=moment)
    credit = split(amount=amount, period=period, at=moment).unused
    assert 0 <= credit - charge <= 1


def test_an_upgrade_half_way_credits_half_the_old_and_charges_half_the_new():
    result = upgrade(old_amount=900, new_amount=2900, period=APRIL, at=at(2024, 4, 16))
    assert (result.credit, result.debit, result.net) == (450, 1450, 1000)


def test_an_upgrade_never_pays_the_customer_out_when_roundings_meet():
    # 100 and 101 over 30.5% of the period: credit ceil(30.5) = 31, charge floor(30.805) = 30.
    period = Period(start=at(2024, 4, 1), end=at(2024, 4, 1) + dt.timedelta(seconds=1000))
    result = upgrade(
        old_amount=100, new_amount=101, period=period, at=period.start + dt.timedelta(seconds=695)
    )
    assert (result.credit, result.debit, result.net) == (30, 30, 0)


def test_an_upgrade_must_not_lower_the_price():
    with pytest.raises(ValueError, match="does not lower"):
        upgrade(old_amount=2900, new_amount=900, period=APRIL, at=at(2024, 4, 2))


@given(old=amounts, extra=amounts, period=periods, fraction=st.fractions(min_value=0, max_value=1))
def test_an_upgrade_charges_at_most_the_exact_difference_and_never_below_zero(
    old, extra, period, fraction
):
    new = old + extra
    moment = period.start + dt.timedelta(seconds=int(period.seconds * fraction))
    result = upgrade(old_amount=old, new_amount=new, period=period, at=moment)
    remaining = period.seconds - seconds_used(period=period, at=moment)
    assert 0 <= result.credit <= split(amount=old, period=period, at=moment).unused
    assert result.net >= 0
    # In the customer's favour: never more than the exact difference for the time left.
    assert result.net * period.seconds <= extra * remaining


steps = st.sampled_from([1, 10, 100, 1000])


@given(units=amounts, step=steps, period=periods, fraction=st.fractions(min_value=0, max_value=1))
def test_with_a_charge_step_every_prorated_amount_is_a_multiple_of_it(
    units, step, period, fraction
):
    amount = units * step  # prices are chargeable: multiples of the gateway's step
    moment = period.start + dt.timedelta(seconds=int(period.seconds * fraction))
    result = split(amount=amount, period=period, at=moment, step=step)
    assert result.used + result.unused == amount
    assert result.used % step == 0
    assert result.unused % step == 0
    # In the customer's favour, by less than one step: the used part rounds down.
    exact_used_times_period = amount * result.used_seconds
    assert result.used * result.period_seconds <= exact_used_times_period
    assert exact_used_times_period < (result.used + step) * result.period_seconds
    charge = remaining_charge(amount=amount, period=period, at=moment, step=step)
    assert charge % step == 0
    assert 0 <= result.unused - charge <= step


@given(old=amounts, extra=amounts, step=steps, period=periods, fraction=st.fractions(0, 1))
def test_an_upgrade_with_a_charge_step_charges_a_multiple_of_it(old, extra, step, period, fraction):
    moment = period.start + dt.timedelta(seconds=int(period.seconds * fraction))
    result = upgrade(
        old_amount=old * step, new_amount=(old + extra) * step, period=period, at=moment, step=step
    )
    assert result.credit % step == 0
    assert result.debit % step == 0
    assert result.net >= 0
    remaining = period.seconds - seconds_used(period=period, at=moment)
    assert result.net * period.seconds <= extra * step * remaining


def test_a_step_of_one_is_the_rule_without_a_step():
    moment = at(2024, 4, 9, 7, 13, 11)
    assert split(amount=12345, period=APRIL, at=moment, step=1) == split(
        amount=12345, period=APRIL, at=moment
    )
    assert upgrade(old_amount=900, new_amount=2900, period=APRIL, at=moment, step=1) == upgrade(
        old_amount=900, new_amount=2900, period=APRIL, at=moment
    )
