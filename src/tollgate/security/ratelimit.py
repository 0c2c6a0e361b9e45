"""Counting requests against the named policies (``tollgate.security.policies``).

Counts live in ``settings.RATELIMIT_STORAGE_URL``: ``memory://`` keeps them inside one process (the
embedded default), a Redis URL shares them between every web process and survives restarts. Every
key Tollgate writes to Redis starts with ``settings.RATELIMIT_KEY_PREFIX``, so resetting the limits
never touches anything else stored there.

Sign-in and other per-person policies use moving windows: a policy of 10/5minute allows at most
ten requests in any five minutes, and the wait reported to a refused client is exact (until its
oldest counted request ages out). API operation classes, counted at high rates on every call, use
sliding-window counters (:meth:`Limiter.hit_counter`): two counters per subject instead of one
entry per request, one round trip to Redis, and a count that weighs the previous window by how
much of it is still inside the last window.

If the storage is unreachable the limiter fails open (allows and logs an error): rate limits defend
against abuse, and a Redis outage must not take sign-in and the API down with it. /readyz reports
the outage to the operator.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
from django.conf import settings
from django.utils.crypto import salted_hmac
from limits import RateLimitItem
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from tollgate.security.policies import rate_for, rate_item

log = structlog.get_logger("tollgate.security")

# A request to an unreachable Redis must not hold a web thread for long.
_REDIS_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Decision:
    """The state of one policy's bucket after a request was counted (or looked at)."""

    policy: str
    allowed: bool
    limit: int
    window: int
    remaining: int
    reset_after: int
    """Seconds until at least one more request is allowed (0 when the bucket is untouched)."""

    def headers(self) -> dict[str, str]:
        """The IETF ``RateLimit-Policy`` and ``RateLimit`` fields (structured-field form)."""
        return {
            "RateLimit-Policy": f'"{self.policy}";q={self.limit};w={self.window}',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={self.reset_after}',
        }


@dataclass(frozen=True)
class CounterHit:
    """One request to count on a sliding-window counter (``lua/sliding_counter.lua``)."""

    policy: str
    limit: int
    window: int
    elapsed: float  # seconds into the running window
    keys: list[str]  # the running window's counter, the previous window's

    @property
    def args(self) -> list[Any]:
        return [self.limit, self.window, repr(self.elapsed), 1]

    def decision(self, result: Any) -> Decision:
        """The decision from the script's result ``[allowed, used, running, before]``."""
        allowed, used, running, before = (
            bool(result[0]),
            float(result[1]),
            int(result[2]),
            int(result[3]),
        )
        window, elapsed = self.window, self.elapsed
        if allowed:
            reset_after = math.ceil(window - elapsed)
        elif running + 1 > self.limit or before == 0:
            reset_after = math.ceil(window - elapsed)  # wait for the next window
        else:
            # The previous window's weight falls until one more request fits.
            needed = before * (window - elapsed) / window - (self.limit - running - 1)
            reset_after = math.ceil(needed * window / before)
        return Decision(
            policy=self.policy,
            allowed=allowed,
            limit=self.limit,
            window=window,
            remaining=max(0, self.limit - math.ceil(used)),
            reset_after=max(1, min(window, reset_after)),
        )


class Limiter:
    """One rate-limit storage and its counting strategy; safe to share between threads.

    Two instances built from the same Redis URL and prefix see the same counts (as two web
    processes, or one process before and after a restart, do).
    """

    def __init__(self, *, storage_url: str, key_prefix: str) -> None:
        self.storage_url = storage_url
        self.key_prefix = key_prefix
        self.storage = _open_storage(storage_url, key_prefix)
        self._strategy = MovingWindowRateLimiter(self.storage)
        self._lock = threading.Lock()
        self._counter_script = _counter_script(self.storage)

    def hit(self, policy: str, subject: str, *, rate: str | None = None) -> Decision | None:
        """Counts one request by ``subject`` against ``policy``; a refused request is not counted.
        ``rate`` replaces the policy's rate for this subject (an API key's or a plan's own).
        None when the storage is unreachable (the caller lets the request through)."""
        item = rate_for(policy) if rate is None else rate_item(policy, rate)
        try:
            allowed = self._strategy.hit(item, subject)
            return self._decision(policy, item, subject, allowed=allowed)
        except StorageError as exc:
            _storage_failed(exc, policy)
            return None

    def hit_counter(self, policy: str, subject: str, *, rate: str | None = None) -> Decision | None:
        """Counts one request by ``subject`` against ``policy`` (or ``rate``) on a sliding-window
        counter; a refused request is not counted. One round trip on Redis. None when the
        storage is unreachable."""
        hit = self.counter_hit(policy, subject, rate=rate)
        try:
            return hit.decision(self._counter(hit))
        except StorageError as exc:
            _storage_failed(exc, policy)
            return None
        except RedisError as exc:
            _storage_failed(StorageError(exc), policy)
            return None

    def counter_hit(self, policy: str, subject: str, *, rate: str | None = None) -> CounterHit:
        """What :meth:`hit_counter` sends to Redis, for a caller that sends it together with its
        own commands on the same Redis (:attr:`storage_url`) and decides with
        :meth:`CounterHit.decision` from the script's result."""
        item = rate_for(policy) if rate is None else rate_item(policy, rate)
        window = item.get_expiry()
        index, elapsed = divmod(time.time(), window)
        keys = [
            f"{self.key_prefix}:counter:{policy}:{subject}:{int(index)}",
            f"{self.key_prefix}:counter:{policy}:{subject}:{int(index) - 1}",
        ]
        return CounterHit(policy, item.amount, window, elapsed, keys)

    def counter_failed(self, hit: CounterHit, exc: Exception) -> None:
        """Note that a :meth:`counter_hit` sent by a caller got no answer (the request goes on:
        the limiter fails open)."""
        _storage_failed(StorageError(exc), hit.policy)

    def _counter(self, hit: CounterHit) -> Any:
        if self._counter_script is not None:
            return self._counter_script(keys=hit.keys, args=hit.args)
        # In-process storage: the same arithmetic, under this limiter's lock.
        limit, window, elapsed = hit.limit, hit.window, hit.elapsed
        with self._lock:
            running = int(self.storage.get(hit.keys[0]) or 0)
            before = int(self.storage.get(hit.keys[1]) or 0)
            used = before * (window - elapsed) / window + running
            if used + 1 > limit:
                return [0, repr(used), running, before]
            self.storage.incr(hit.keys[0], window * 2)
            return [1, repr(used + 1), running + 1, before]

    def peek(self, policy: str, subject: str) -> Decision | None:
        """Whether ``subject`` may make one more request under ``policy``, without counting it.
        None when the storage is unreachable."""
        item = rate_for(policy)
        try:
            return self._decision(policy, item, subject, allowed=None)
        except StorageError as exc:
            _storage_failed(exc, policy)
            return None

    def clear(self, policy: str, subject: str) -> None:
        """Forgets everything counted for ``subject`` under ``policy``."""
        try:
            self._strategy.clear(rate_for(policy), subject)
        except StorageError as exc:
            _storage_failed(exc, policy)

    def reset(self) -> None:
        """Forgets every count this limiter's storage holds under Tollgate's key prefix.

        On Redis this scans the keyspace for the prefix (KEYS): meant for tests and an operator's
        deliberate reset, not for request handling."""
        self.storage.reset()

    def _decision(
        self, policy: str, item: RateLimitItem, subject: str, *, allowed: bool | None
    ) -> Decision:
        stats = self._strategy.get_window_stats(item, subject)
        window = item.get_expiry()
        if allowed is None:
            allowed = stats.remaining > 0
        reset_after = min(window, max(0, math.ceil(stats.reset_time - time.time())))
        if not allowed:
            reset_after = max(1, reset_after)
        return Decision(
            policy=policy,
            allowed=allowed,
            limit=item.amount,
            window=window,
            remaining=max(0, stats.remaining),
            reset_after=reset_after,
        )


COUNTER_SCRIPT = (Path(__file__).parent / "lua" / "sliding_counter.lua").read_text()
# Redis names a loaded script by its SHA-1.
COUNTER_SCRIPT_SHA = hashlib.sha1(COUNTER_SCRIPT.encode(), usedforsecurity=False).hexdigest()


def _counter_script(storage: Storage) -> Any:
    """The sliding-counter script registered on a Redis storage's client; None in process."""
    connect = getattr(storage, "get_connection", None)
    return None if connect is None else connect().register_script(COUNTER_SCRIPT)


def _open_storage(url: str, key_prefix: str) -> Storage:
    if urlsplit(url).scheme == "memory":
        # Private to this process, so resetting it cannot touch anyone else's data.
        storage = storage_from_string(url, wrap_exceptions=True)
    else:
        storage = storage_from_string(
            url,
            key_prefix=key_prefix,
            wrap_exceptions=True,
            socket_timeout=_REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
        )
    if not isinstance(storage, Storage):  # an async+ URL
        raise TypeError("TOLLGATE_RATELIMIT_STORAGE_URL must name a synchronous storage.")
    return storage


def _storage_failed(exc: StorageError, policy: str) -> None:
    log.error(
        "ratelimit.storage_unavailable",
        policy=policy,
        error=type(exc.storage_error).__name__,
    )


class _ProcessLimiter:
    """The limiter for the current settings, built on first use (after any fork) and rebuilt when
    the storage settings change (tests override them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limiter: Limiter | None = None

    def get(self) -> Limiter:
        url, prefix = settings.RATELIMIT_STORAGE_URL, settings.RATELIMIT_KEY_PREFIX
        current = self._limiter
        if current is not None and current.storage_url == url and current.key_prefix == prefix:
            return current
        with self._lock:
            current = self._limiter
            if current is None or current.storage_url != url or current.key_prefix != prefix:
                current = self._limiter = Limiter(storage_url=url, key_prefix=prefix)
            return current


_process_limiter = _ProcessLimiter()


def limiter() -> Limiter:
    """This process's limiter for the configured storage."""
    return _process_limiter.get()


def reset_all() -> None:
    """Forgets every rate-limit count in the configured storage (Tollgate's keys only)."""
    limiter().reset()


# --- Subjects: who a count is about -----------------------------------------------------------------


def ip_subject(ip: str) -> str:
    """The bucket for a client address. IPv6 clients are counted per /64, the block a single
    subscriber usually controls; counting per address would let one client rotate through 2^64."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"ip:{address.ipv4_mapped}"
        return f"ip:{ipaddress.ip_network(f'{address}/64', strict=False)}"
    return f"ip:{address}"


def secret_subject(kind: str, value: str) -> str:
    """An opaque bucket name for a personal value (an email address, a user id). It is keyed with
    SECRET_KEY, so the storage never holds the value and guesses cannot be checked against it."""
    digest = salted_hmac(f"tollgate.security.{kind}", value, algorithm="sha256").hexdigest()
    return f"{kind}:{digest[:32]}"


def email_subject(email: str) -> str | None:
    """The bucket for an email address, the same whatever its case or surrounding spaces."""
    normalized = email.strip().lower()
    return secret_subject("email", normalized) if normalized else None


def user_subject(user_pk: object) -> str:
    return secret_subject("user", str(user_pk))
