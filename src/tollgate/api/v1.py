"""JSON API v1: thin endpoints over services and selectors, one error shape everywhere."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from tollgate import __version__
from tollgate.api import billing, customers, webhooks
from tollgate.api.schemas import PriceOut
from tollgate.catalog.selectors import plans_for_sale
from tollgate.core.errors import RateLimited, TollgateError

DESCRIPTION = """What your product asks Tollgate: which customer may do what (the entitlement
check is the hot path, answered from cache), usage to count against plan limits, customers,
subscriptions and invoices, and links that send a customer to a checkout or their billing pages.

**Authentication:** `Authorization: Bearer tg_live_...` with an API key created by staff (staff
console, admin, or `manage.py api_key_create`) or by a customer on their account page. Each
endpoint needs one scope: `entitlements:read`, `usage:write`, `customers:write`, `billing:read` or
`webhooks:manage` (webhook endpoints, as staff manage them in the staff console). A missing, malformed, revoked or expired key gets 401; a key without the scope
gets 403.

**Rate limits** are counted per key (a customer's keys together), per operation class: `read`
(1,200/minute by default), `write` (300/minute), `usage` (1,200/minute), `check`
(6,000/minute). Operator keys may carry their own rates; customer keys get their plan's. Every
answer carries `RateLimit-Policy` and `RateLimit`; a refusal is 429 with `Retry-After`.

**Idempotency:** every POST takes `Idempotency-Key`. The same key and body within 24 hours
returns the first answer (`Idempotent-Replayed: true`); the same key with another body gets 422;
the same key while the first request runs gets 409.

**Errors** always have the shape `{"error": {"code": "...", "message": "...", "details": {...}}}`.
Amounts are integers in minor units (cents); times are ISO 8601 in UTC.
"""

api = NinjaAPI(
    title="Tollgate API",
    version="1",
    description=DESCRIPTION,
    urls_namespace="api-v1",
    docs_url="/docs",
    openapi_url="/openapi.json",
)
api.add_router("", customers.router)
api.add_router("", billing.router)
api.add_router("", webhooks.router)


def _error(
    request: HttpRequest, status: int, code: str, message: str, details: dict | None = None
) -> HttpResponse:
    return api.create_response(
        request,
        {"error": {"code": code, "message": message, "details": details or {}}},
        status=status,
    )


@api.exception_handler(TollgateError)
def _tollgate_error(request: HttpRequest, exc: TollgateError) -> HttpResponse:
    response = _error(request, exc.status, exc.code, exc.message, exc.details)
    if isinstance(exc, RateLimited):
        response["Retry-After"] = str(exc.retry_after)
        decision = getattr(request, "rate_limit_decision", None)
        if decision is not None:
            for name, value in decision.headers().items():
                response[name] = value
    return response


@api.exception_handler(NinjaValidationError)
def _validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    fields = [
        {"field": _field_name(error.get("loc", [])), "message": error.get("msg", "")}
        for error in exc.errors
    ]
    return _error(
        request,
        422,
        "validation_failed",
        "Some of the values sent are not valid; see details.",
        {"fields": fields},
    )


# The endpoints' own names for their body and query schemas, which callers never see.
_PARAMETER_NAMES = frozenset({"payload", "filters"})


def _field_name(loc: Any) -> str:
    parts = [str(part) for part in loc]
    if len(parts) > 2 and parts[1] in _PARAMETER_NAMES:
        del parts[1]
    return ".".join(parts)


@api.exception_handler(AuthenticationError)
def _authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(request, 401, "not_authenticated", "Send valid credentials to use this endpoint.")


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, 404, "not_found", "Nothing exists at this address.")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return _error(request, exc.status_code, "error", str(exc))


class PlanOut(Schema):
    id: str
    code: str
    name: str
    description: str
    product: str
    trial_days: int
    features: dict[str, bool]
    limits: dict[str, int]
    prices: list[PriceOut]


class StatusOut(Schema):
    version: str


@api.get("/status", response=StatusOut, summary="API status and version", tags=["meta"])
def status(request: HttpRequest) -> dict[str, str]:
    return {"version": __version__}


@api.get(
    "/plans", response=list[PlanOut], summary="Plans on sale, with their prices", tags=["catalog"]
)
def plans(request: HttpRequest) -> list[dict[str, object]]:
    return [
        {
            "id": plan.public_id,
            "code": plan.code,
            "name": plan.name,
            "description": plan.description,
            "product": plan.product.code,
            "trial_days": plan.trial_days,
            "features": plan.features,
            "limits": plan.limits,
            "prices": [
                {
                    "id": price.public_id,
                    "amount": price.amount,
                    "currency": price.currency,
                    "interval": price.interval,
                    "interval_count": price.interval_count,
                    "per_seat": price.per_seat,
                }
                for price in plan.prices.all()
            ],
        }
        for plan in plans_for_sale()
    ]
