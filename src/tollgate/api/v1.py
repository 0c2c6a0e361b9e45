"""JSON API v1: thin endpoints over services and selectors, one error shape everywhere."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from tollgate import __version__
from tollgate.catalog.selectors import plans_for_sale
from tollgate.core.errors import TollgateError

api = NinjaAPI(
    title="Tollgate API",
    version="1",
    description="Accounts, plans, subscriptions and entitlements. Errors always have the shape "
    '`{"error": {"code": "...", "message": "...", "details": {...}}}`.',
    urls_namespace="api-v1",
    docs_url="/docs",
    openapi_url="/openapi.json",
)


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
    return _error(request, exc.status, exc.code, exc.message, exc.details)


@api.exception_handler(NinjaValidationError)
def _validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    fields = [
        {
            "field": ".".join(str(part) for part in error.get("loc", [])),
            "message": error.get("msg", ""),
        }
        for error in exc.errors
    ]
    return _error(
        request,
        422,
        "validation_failed",
        "Some of the values sent are not valid; see details.",
        {"fields": fields},
    )


@api.exception_handler(AuthenticationError)
def _authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(request, 401, "not_authenticated", "Send valid credentials to use this endpoint.")


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, 404, "not_found", "Nothing exists at this address.")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return _error(request, exc.status_code, "error", str(exc))


class PriceOut(Schema):
    id: str
    amount: int
    currency: str
    interval: str
    interval_count: int


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
                }
                for price in plan.prices.all()
            ],
        }
        for plan in plans_for_sale()
    ]
