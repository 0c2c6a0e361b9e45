"""The API's sliding-window counters: the previous window counts by the share of it still inside
the last window; a refusal says how long to wait; the same in process and on Redis."""

from __future__ import annotations

import os
import secrets

import pytest

from tollgate.security import ratelimit
from tollgate.security.ratelimit import Limiter

STORAGES = ["memory://"]
if os.environ.get("REDIS_URL"):
    STORAGES.append(os.environ["REDIS_URL"])


@pytest.fixture(params=STORAGES)
def limiter(request) -> Limiter:
    return Limiter(storage_url=request.param, key_prefix=f"test-counter-{secrets.token_hex(4)}")


@pytest.fixture
def at(monkeypatch):
    """Set the limiter's clock: seconds since an hour boundary (windows start on the minute)."""
    base = 1_800_000_000 - 1_800_000_000 % 3600

    def move(seconds: float) -> None:
        monkeypatch.setattr(ratelimit.time, "time", lambda: base + seconds)

    return move


def test_a_window_allows_its_rate_then_refuses_until_it_ends(limiter, at):
    at(10)
    decisions = [limiter.hit_counter("api-check", "key:a", rate="10/minute") for _ in range(11)]
    assert [d.allowed for d in decisions] == [True] * 10 + [False]
    assert (decisions[9].remaining, decisions[10].remaining) == (0, 0)
    assert decisions[10].reset_after == 50
    assert limiter.hit_counter("api-check", "key:b", rate="10/minute").allowed  # own allowance


def test_the_previous_window_counts_by_its_share_of_the_last_window(limiter, at):
    at(0)
    for _ in range(10):
        assert limiter.hit_counter("api-check", "key:a", rate="10/minute").allowed
    at(90)  # half-way through the next window: the previous one counts as 5
    allowed = [limiter.hit_counter("api-check", "key:a", rate="10/minute") for _ in range(6)]
    assert [d.allowed for d in allowed] == [True] * 5 + [False]
    # Another request fits when the old window's share has fallen by one: 6 s on.
    assert allowed[-1].reset_after == 6
    at(96.5)
    assert limiter.hit_counter("api-check", "key:a", rate="10/minute").allowed


def test_an_unreachable_redis_lets_the_request_through():
    down = Limiter(storage_url="redis://127.0.0.1:1/0", key_prefix="test-down")
    assert down.hit_counter("api-check", "key:a", rate="10/minute") is None
