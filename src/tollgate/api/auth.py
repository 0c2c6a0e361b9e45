"""Who may call an endpoint: an API key with the endpoint's scope, within its rate.

Each endpoint names its scope and its operation class (read, write, usage, check). A request
without a usable key is refused with 401 (and counted against the caller's address, so guessing
keys is slow); with a key that lacks the scope, 403; over the key's rate for the class, 429 with
``Retry-After`` and the ``RateLimit`` headers, which every answer carries.

An endpoint on the hot path names what else it reads from the cache (``reads``): what the request
names comes in the same round trip as the key, and what that tells (a customer's entitlements) in
the same round trip as the rate-limit count when the limiter and the cache share one Redis. The
entries wait on the request (:func:`cache_found`) for the endpoint, which uses them only once the
key has been accepted and the request counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from ninja.security import HttpBearer
from redis.exceptions import RedisError

from tollgate.core import context
from tollgate.core.cache import Script
from tollgate.core.errors import RateLimited
from tollgate.integrations.keys import (
    ApiIdentity,
    ApiKeyInvalid,
    api_key_authenticate,
    api_key_cache_keys,
)
from tollgate.security import endpoints
from tollgate.security.policies import POLICIES
from tollgate.security.ratelimit import COUNTER_SCRIPT, COUNTER_SCRIPT_SHA, Decision, limiter

READ, WRITE, USAGE, CHECK = "read", "write", "usage", "check"


class CacheReads(Protocol):
    """What an endpoint reads from the cache, read with its caller's key and rate-limit count."""

    def with_key(self, request: HttpRequest) -> list[str]:
        """Entries the request names (read before the key is accepted: nothing is used yet)."""
        ...

    def with_count(self, request: HttpRequest, found: Mapping[str, Any]) -> list[str]:
        """Entries that ``found`` (what :meth:`with_key` found) leads to."""
        ...


@dataclass
class _Read:
    keys: set[str]
    found: dict[str, Any]


class ApiKeyAuth(HttpBearer):
    """``Authorization: Bearer tg_...`` with ``scope``, counted in ``operation``'s rate policy."""

    openapi_scheme = "bearer"
    openapi_bearerFormat = "tg_live_... or tg_test_... API key"

    def __init__(
        self,
        *,
        scope: str,
        operation: str,
        reads: CacheReads | None = None,
    ) -> None:
        super().__init__()
        self.scope = scope
        self.operation = operation
        self.reads = reads

    def __call__(self, request: HttpRequest) -> ApiIdentity | None:
        header = request.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiKeyInvalid()
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiIdentity | None:
        try:
            identity = api_key_authenticate(presented=token, found=self._read(request, token))
        except ApiKeyInvalid:
            _count_failure(request)
            raise
        identity.require(self.scope)
        also: list[str] = []
        if self.reads is not None and (read := _read_of(request)) is not None:
            also = self.reads.with_count(request, read.found)
        _count(request, identity, self.operation, also=also)
        # Audit events of this request name the key (the request's context ends with it).
        context.bind(replace(context.current(), api_key=identity.key_id))
        return identity

    def _read(self, request: HttpRequest, token: str) -> Mapping[str, Any] | None:
        """The key's cache entry and what the endpoint reads with it, in one round trip."""
        if self.reads is None:
            return None
        keys = api_key_cache_keys(presented=token)
        if not keys:
            return None
        keys += self.reads.with_key(request)
        found = cache.get_many(keys)
        request.cache_read = _Read(set(keys), found)  # type: ignore[attr-defined]
        return found


def _read_of(request: HttpRequest) -> _Read | None:
    return getattr(request, "cache_read", None)


def _remember(request: HttpRequest, keys: list[str], found: dict[str, Any]) -> None:
    read = _read_of(request)
    if read is not None:
        read.keys.update(keys)
        read.found.update(found)


def cache_found(request: HttpRequest, keys: Iterable[str]) -> Mapping[str, Any] | None:
    """What the request's authentication read from the cache of ``keys`` for its endpoint (a key
    missing from it is not in the cache); None unless it read every one of them."""
    read = _read_of(request)
    if read is None or not read.keys.issuperset(keys):
        return None
    return read.found


def _refuse_if_over(request: HttpRequest, decision: Decision | None) -> None:
    if decision is None:
        return
    request.rate_limit_decision = decision  # type: ignore[attr-defined]
    if not decision.allowed:
        message = POLICIES[decision.policy].message.format(wait=f"{decision.reset_after} s")
        raise RateLimited(
            message, retry_after=decision.reset_after, details={"policy": decision.policy}
        )


def _count_failure(request: HttpRequest) -> None:
    if settings.RATELIMIT_ENABLED:
        decision = limiter().hit(endpoints.API_POLICY, endpoints.ip_of(request))
        _refuse_if_over(request, decision)


def _count(request: HttpRequest, identity: ApiIdentity, operation: str, *, also: list[str]) -> None:
    """Count the request in its operation's policy; read ``also`` from the cache in the same
    round trip when the limiter's Redis is the cache's."""
    if not settings.RATELIMIT_ENABLED:
        return
    # A customer's keys share one allowance (more keys are not more requests).
    subject = (
        f"key:{identity.key_id}" if identity.is_operator else f"customer:{identity.customer_pk}"
    )
    policy, rate = f"api-{operation}", identity.rate_for(operation)
    if not also or not _limiter_shares_cache():
        _refuse_if_over(request, limiter().hit_counter(policy, subject, rate=rate))
        return
    hit = limiter().counter_hit(policy, subject, rate=rate)
    script = Script(text=COUNTER_SCRIPT, sha=COUNTER_SCRIPT_SHA, keys=hit.keys, args=hit.args)
    try:
        found, counted = cache.get_many_and_eval(also, script)  # type: ignore[attr-defined]
    except RedisError as exc:
        limiter().counter_failed(hit, exc)  # fails open, as the limiter does
        return
    _remember(request, also, found)
    _refuse_if_over(request, hit.decision(counted))


def _limiter_shares_cache() -> bool:
    """Whether the rate-limit counts live in the cache's Redis (the default: both REDIS_URL)."""
    location = settings.CACHES["default"].get("LOCATION")
    return location == settings.RATELIMIT_STORAGE_URL and hasattr(cache, "get_many_and_eval")
