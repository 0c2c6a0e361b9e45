from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollgate.core import clock
from tollgate.core.ids import new_public_id
from tollgate.core.money import Money, currency_exponent, validate_currency


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1999, "USD", "$19.99"),
        (-1999, "usd", "-$19.99"),
        (123456789, "EUR", "€1,234,567.89"),
        (500, "JPY", "¥500"),
        (1234, "KWD", "1.234 KWD"),
        (5, "SEK", "0.05 SEK"),
    ],
)
def test_money_formats_exactly(amount, currency, text):
    assert Money(amount, currency).format() == text


def test_money_refuses_floats_and_mixed_currencies():
    with pytest.raises(TypeError):
        Money(19.99, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(True, "USD")
    with pytest.raises(ValueError, match="different currencies"):
        Money(1, "USD") + Money(1, "EUR")
    with pytest.raises(ValueError, match="not an ISO 4217"):
        validate_currency("US")


@given(st.integers(-(10**15), 10**15), st.integers(-(10**15), 10**15))
def test_money_arithmetic_is_exact(a, b):
    assert (Money(a, "USD") + Money(b, "USD") - Money(b, "USD")) == Money(a, "USD")
    assert -Money(a, "EUR") == Money(-a, "EUR")


def test_currency_exponents():
    assert currency_exponent("USD") == 2
    assert currency_exponent("JPY") == 0
    assert currency_exponent("BHD") == 3


def test_clock_is_aware_utc_and_can_be_frozen():
    assert clock.now().tzinfo == dt.UTC
    moment = dt.datetime(2030, 1, 31, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with clock.frozen(moment):
        assert clock.now() == moment
        assert clock.now().utcoffset() == dt.timedelta(0)
    assert clock.now() != moment
    with pytest.raises(ValueError, match="aware"), clock.frozen(dt.datetime(2030, 1, 1)):
        pass


def test_public_ids_are_prefixed_and_unique():
    ids = {new_public_id("cus") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("cus_") and len(i) == 24 for i in ids)
    assert not any(set(i[4:]) & set("ILOU") for i in ids)


def test_threads_freezing_the_clock_at_once_leave_it_running_afterwards():
    import threading

    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, dt.datetime] = {}

    def first() -> None:
        with clock.frozen(dt.datetime(2030, 1, 1, tzinfo=dt.UTC)):
            first_in.set()
            second_in.wait(5)
            seen["first"] = clock.now()
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with clock.frozen(dt.datetime(2040, 1, 1, tzinfo=dt.UTC)):
            second_in.set()
            first_out.wait(5)
            seen["second"] = clock.now()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    # Each thread saw its own frozen time, and neither left it frozen for anyone else.
    assert (seen["first"].year, seen["second"].year) == (2030, 2040)
    assert abs(clock.now() - dt.datetime.now(tz=dt.UTC)) < dt.timedelta(seconds=5)
