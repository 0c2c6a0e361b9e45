"""Who may call an endpoint: an API key with the endpoint's scope, within its rate.

Each endpoint names its scope and its operation class (read, write, usage, check). A request
without a usable key is refused with 401 (and counted against the caller's address, so guessing
keys is slow); with a key that lacks the scope, 403; over the key's rate for the class, 429 with
``Retry-After`` and the ``RateLimit`` headers, which every answer carries.

An endpoint on the hot path names what else it reads from the cache (``reads``, from the request):
those entries come in the same round trip as the key and wait on the request (:func:`cache_found`)
for the endpoint, which uses them only once the key has been accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from ninja.security import HttpBearer

from tollgate.core import context
from tollgate.core.errors import RateLimited
from tollgate.integrations.keys import (
    ApiIdentity,
    ApiKeyInvalid,
    api_key_authenticate,
    api_key_cache_keys,
)
from tollgate.security import endpoints
from tollgate.security.policies import POLICIES
from tollgate.security.ratelimit import Decision, limiter

READ, WRITE, USAGE, CHECK = "read", "write", "usage", "check"


class ApiKeyAuth(HttpBearer):
    """``Authorization: Bearer tg_...`` with ``scope``, counted in ``operation``'s rate policy."""

    openapi_scheme = "bearer"
    openapi_bearerFormat = "tg_live_... or tg_test_... API key"

    def __init__(
        self,
        *,
        scope: str,
        operation: str,
        reads: Callable[[HttpRequest], list[str]] | None = None,
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
        _count(request, identity, self.operation)
        # Audit events of this request name the key (the request's context ends with it).
        context.bind(replace(context.current(), api_key=identity.key_id))
        return identity

    def _read(self, request: HttpRequest, token: str) -> Mapping[str, Any] | None:
        """The key's cache entry and the endpoint's ``reads``, in one round trip."""
        if self.reads is None:
            return None
        keys = api_key_cache_keys(presented=token)
        found = cache.get_many([*keys, *self.reads(request)]) if keys else {}
        request.cache_found = found  # type: ignore[attr-defined]
        return found


def cache_found(request: HttpRequest) -> Mapping[str, Any] | None:
    """What the request's authentication read from the cache for its endpoint (None: nothing)."""
    return getattr(request, "cache_found", None)


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


def _count(request: HttpRequest, identity: ApiIdentity, operation: str) -> None:
    if not settings.RATELIMIT_ENABLED:
        return
    # A customer's keys share one allowance (more keys are not more requests).
    subject = (
        f"key:{identity.key_id}" if identity.is_operator else f"customer:{identity.customer_pk}"
    )
    decision = limiter().hit_counter(f"api-{operation}", subject, rate=identity.rate_for(operation))
    _refuse_if_over(request, decision)
