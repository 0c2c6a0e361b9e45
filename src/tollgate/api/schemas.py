"""Request and response shapes of API v1, with the examples the OpenAPI document shows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Field, Schema
from pydantic import ConfigDict, StrictBool, StrictInt

CUSTOMER_EXAMPLE = {
    "object": "customer",
    "id": "cus_7F3KQ2ABCDEFGHJKMNPQ",
    "external_id": "user_1234",
    "email": "ada@example.com",
    "name": "Ada Lovelace",
    "created_at": "2026-01-31T12:00:00Z",
}


def _example(value: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [value]})


class ErrorBody(Schema):
    code: str
    message: str
    details: dict[str, Any]


class ErrorOut(Schema):
    """Every error has this shape; ``code`` is stable, ``message`` says what to do next."""

    model_config = _example(
        {
            "error": {
                "code": "not_authenticated",
                "message": "Send a valid API key as 'Authorization: Bearer tg_...'.",
                "details": {},
            }
        }
    )
    error: ErrorBody


# --- Customers ---------------------------------------------------------------------------------
class CustomerOut(Schema):
    model_config = _example(CUSTOMER_EXAMPLE)
    object: str = "customer"
    id: str
    external_id: str | None
    email: str
    name: str
    created_at: str


class CustomerIn(Schema):
    model_config = _example(
        {"external_id": "user_1234", "email": "ada@example.com", "name": "Ada Lovelace"}
    )
    email: str = Field(max_length=254)
    external_id: str | None = Field(
        None, max_length=255, description="Your own id for this customer (your user id)."
    )
    name: str = Field("", max_length=150)
    create_login: StrictBool = Field(
        False,
        description="Also email the person a link to choose a password, so they can sign in "
        "to Tollgate directly. Without it they reach billing only through portal and checkout "
        "links.",
    )


class CustomerPatch(Schema):
    model_config = _example({"email": "ada@example.org", "name": "Ada King"})
    email: str | None = Field(None, max_length=254)
    name: str | None = Field(None, max_length=150)
    external_id: str | None = Field(None, max_length=255)


class CustomerList(Schema):
    object: str = "list"
    data: list[CustomerOut]
    has_more: bool
    next_cursor: str | None


class MemberOut(Schema):
    object: str = "member"
    id: str = Field(description="The account's id (usr_...)")
    email: str
    name: str
    role: str = Field(description="owner, admin or member")
    since: str | None


class MemberList(Schema):
    object: str = "list"
    data: list[MemberOut]


# --- Entitlements and usage ------------------------------------------------------------------------
class OfferOut(Schema):
    reason: str = Field(description="`feature` (missing) or `limit` (reached or nearly).")
    key: str
    plan: str
    plan_name: str
    price: str
    amount: int = Field(description="In minor units (cents).")
    currency: str
    interval: str
    interval_count: int
    limit: int | None = Field(description="The plan's limit for `key`; null: unlimited.")


class LimitOut(Schema):
    limit: int | None = Field(description="null: unlimited.")
    used: int
    remaining: int | None


class EntitlementsOut(Schema):
    model_config = _example(
        {
            "customer": "cus_7F3KQ2ABCDEFGHJKMNPQ",
            "plan": "pro",
            "plan_name": "Pro",
            "status": "active",
            "subscription": "sub_7F3KQ2ABCDEFGHJKMNPQ",
            "current_period_end": "2026-02-28T12:00:00Z",
            "usage_period_start": "2026-01-31T12:00:00Z",
            "usage_period_end": "2026-02-28T12:00:00Z",
            "features": {"api_access": True, "sso": False},
            "limits": {
                "api_calls_per_month": {"limit": 100000, "used": 81234, "remaining": 18766},
                "projects": {"limit": 25, "used": 3, "remaining": 22},
            },
            "upgrade": [
                {
                    "reason": "feature",
                    "key": "sso",
                    "plan": "business",
                    "plan_name": "Business",
                    "price": "price_7F3KQ2ABCDEFGHJKMNPQ",
                    "amount": 9900,
                    "currency": "USD",
                    "interval": "month",
                    "interval_count": 1,
                    "limit": None,
                }
            ],
        }
    )
    customer: str
    plan: str | None
    plan_name: str | None
    status: str | None = Field(
        description="The subscription's status (trialing, active, past_due grant access); "
        "null without a subscription."
    )
    subscription: str | None
    current_period_end: str | None
    usage_period_start: str
    usage_period_end: str
    features: dict[str, bool]
    limits: dict[str, LimitOut]
    upgrade: list[OfferOut]


class CheckIn(Schema):
    model_config = _example({"customer": "user_1234", "feature": "projects", "quantity": 1})
    customer: str = Field(max_length=255, description="Tollgate's `cus_` id or your external id.")
    feature: str = Field(max_length=64, description="A feature key or a limit key of the catalog.")
    quantity: StrictInt = Field(
        1, ge=0, description="For a limit: how many more the customer is about to use."
    )


class CheckOut(Schema):
    model_config = _example(
        {
            "allowed": False,
            "reason": "limit_reached",
            "remaining": 0,
            "upgrade": {
                "reason": "limit",
                "key": "projects",
                "plan": "business",
                "plan_name": "Business",
                "price": "price_7F3KQ2ABCDEFGHJKMNPQ",
                "amount": 9900,
                "currency": "USD",
                "interval": "month",
                "interval_count": 1,
                "limit": 500,
            },
        }
    )
    allowed: bool
    reason: str | None = Field(
        description="Why not: no_subscription, past_due, feature_not_in_plan or limit_reached."
    )
    remaining: int | None = Field(description="For a limit: how many remain before this use.")
    upgrade: OfferOut | None


class UsageEventIn(Schema):
    id: str = Field(max_length=255, description="Your id for the event; a resend is ignored.")
    customer: str = Field(max_length=255)
    metric: str = Field(max_length=64, description="A limit key of the catalog.")
    quantity: StrictInt = Field(description="Negative only for level metrics (projects, seats).")
    timestamp: dt.datetime = Field(description="When it happened (ISO 8601 with a time zone).")


class UsageIn(Schema):
    model_config = _example(
        {
            "events": [
                {
                    "id": "evt_0001",
                    "customer": "user_1234",
                    "metric": "api_calls_per_month",
                    "quantity": 120,
                    "timestamp": "2026-01-31T12:00:00Z",
                },
                {
                    "id": "evt_0002",
                    "customer": "user_1234",
                    "metric": "projects",
                    "quantity": 1,
                    "timestamp": "2026-01-31T12:00:05Z",
                },
            ]
        }
    )
    events: list[UsageEventIn] = Field(max_length=1000)


class UsageOut(Schema):
    model_config = _example({"accepted": 2, "duplicates": 0})
    accepted: int
    duplicates: int


# --- Subscriptions and invoices --------------------------------------------------------------------
class PriceOut(Schema):
    id: str
    amount: int = Field(description="Per interval in minor units; per seat when `per_seat`")
    currency: str
    interval: str
    interval_count: int
    per_seat: bool = False


class SubscriptionOut(Schema):
    object: str = "subscription"
    id: str
    customer: str
    customer_external_id: str | None
    status: str
    plan: str
    price: PriceOut
    seats: int = Field(description="The seats a per-seat price is paid for (1 on a flat price)")
    scheduled_seats: int | None = Field(
        None, description="The seats from `current_period_end` on, when fewer were asked for"
    )
    current_period_start: str
    current_period_end: str
    trial_end: str | None
    cancel_at_period_end: bool
    canceled_at: str | None
    ended_at: str | None
    created_at: str


class SubscriptionList(Schema):
    object: str = "list"
    data: list[SubscriptionOut]
    has_more: bool
    next_cursor: str | None


class InvoiceOut(Schema):
    object: str = "invoice"
    id: str
    customer: str
    subscription: str | None
    number: str | None
    status: str
    billing_reason: str
    currency: str
    total: int = Field(description="In minor units.")
    amount_paid: int
    period_start: str | None
    period_end: str | None
    created_at: str
    finalized_at: str | None
    paid_at: str | None
    receipt_pdf_url: str | None = Field(
        description="The receipt PDF, for an hour without signing in (get the invoice again "
        "for a fresh link)."
    )


class InvoiceList(Schema):
    object: str = "list"
    data: list[InvoiceOut]
    has_more: bool
    next_cursor: str | None


# --- Links -------------------------------------------------------------------------------------------
_LINK_USER = (
    "Who the link signs in: the account id (`usr_...`) of an active owner or admin of the "
    "customer's organisation. By default the account that opened the customer; name someone "
    "when that account has left the organisation (422 `link_user_required`)."
)


class CheckoutLinkIn(Schema):
    model_config = _example(
        {
            "customer": "user_1234",
            "price": "price_7F3KQ2ABCDEFGHJKMNPQ",
            "success_url": "https://app.example.com/billing/done",
            "cancel_url": "https://app.example.com/pricing",
        }
    )
    customer: str = Field(max_length=255)
    price: str | None = Field(None, max_length=64, description="A price id on sale.")
    plan: str | None = Field(
        None, max_length=64, description="Or a plan code with `interval` (month or year)."
    )
    interval: str = Field("month", max_length=8)
    success_url: str = Field(max_length=2000)
    cancel_url: str | None = Field(None, max_length=2000)
    user: str | None = Field(None, max_length=64, description=_LINK_USER)
    promotion_code: str | None = Field(
        None,
        max_length=40,
        description="A promotion code, filled in on the checkout with its discount shown. "
        "Checked now (422 `promotion_code_refused`, `details.reason`: unknown, expired, "
        "exhausted, not_applicable or first_time_only) and again when the customer subscribes.",
    )


class SeatsIn(Schema):
    model_config = _example({"seats": 12})
    seats: StrictInt = Field(
        description="The seats the subscription pays for: more are charged now (prorated), "
        "fewer take effect at the period end; never fewer than its organisation's members"
    )


class PortalLinkIn(Schema):
    model_config = _example(
        {"customer": "user_1234", "return_url": "https://app.example.com/settings"}
    )
    customer: str = Field(max_length=255)
    return_url: str | None = Field(None, max_length=2000)
    user: str | None = Field(None, max_length=64, description=_LINK_USER)


class LinkOut(Schema):
    model_config = _example(
        {
            "url": "https://billing.example.com/billing/link/eyJr.../",
            "expires_at": "2026-02-01T12:00:00Z",
        }
    )
    url: str
    expires_at: str
