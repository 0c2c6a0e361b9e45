"""Who may call an endpoint: an API key with the endpoint's scope, within its rate.

Each endpoint names its scope and its operation class (read, write, usage, check). A request
without a usable key is refused with 401 (and counted against the caller's address, so guessing
keys is slow); with a key that lacks the scope, 403; over the key's rate for the class, 429 with
``Retry-After`` and the ``RateLimit`` headers, which every answer carries.
"""

from __future__ import annotations

from dataclasses import replace

from django.conf import settings
from django.http import HttpRequest
from ninja.security import HttpBearer

from tollgate.core import context
from tollgate.core.errors import RateLimited
from tollgate.integrations.keys import ApiIdentity, ApiKeyInvalid, api_key_authenticate
from tollgate.security import endpoints
from tollgate.security.policies import POLICIES
from tollgate.security.ratelimit import Decision, limiter

READ, WRITE, USAGE, CHECK = "read", "write", "usage", "check"


class ApiKeyAuth(HttpBearer):
    """``Authorization: Bearer tg_...`` with ``scope``, counted in ``operation``'s rate policy."""

    openapi_scheme = "bearer"
    openapi_bearerFormat = "tg_live_... or tg_test_... API key"

    def __init__(self, *, scope: str, operation: str) -> None:
        super().__init__()
        self.scope = scope
        self.operation = operation

    def __call__(self, request: HttpRequest) -> ApiIdentity | None:
        header = request.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiKeyInvalid()
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiIdentity | None:
        try:
            identity = api_key_authenticate(presented=token)
        except ApiKeyInvalid:
            _count_failure(request)
            raise
        identity.require(self.scope)
        _count(request, identity, self.operation)
        # Audit events of this request name the key (the request's context ends with it).
        context.bind(replace(context.current(), api_key=identity.key_id))
        return identity


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
