"""Subscriptions (read, and the seats of a per-seat one) and invoices (read); and the links that
send a customer to a checkout or to their billing pages."""

import secrets
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Schema, Status

from tollgate.api.auth import READ, WRITE, ApiKeyAuth
from tollgate.api.customers import ERRORS, customer_object, customer_ref, identity_of
from tollgate.api.idempotency import HEADER as IDEMPOTENCY_KEY
from tollgate.api.idempotency import OPENAPI as IDEMPOTENCY_HEADER
from tollgate.api.idempotency import idempotent_post
from tollgate.api.schemas import (
    CheckoutLinkIn,
    InvoiceList,
    InvoiceOut,
    LinkOut,
    PortalLinkIn,
    SeatsIn,
    SubscriptionList,
    SubscriptionOut,
)
from tollgate.billing import services
from tollgate.billing.models import Invoice, Subscription
from tollgate.billing.states import InvoiceStatus, SubscriptionStatus
from tollgate.catalog.models import Price
from tollgate.core.errors import NotFound, ValidationFailed
from tollgate.core.pagination import paginate
from tollgate.integrations import links
from tollgate.integrations.representations import invoice_data, iso, subscription_data

router = Router()
_READ = ApiKeyAuth(scope="billing:read", operation=READ)


class SubscriptionFilters(Schema):
    customer: str | None = None
    status: str | None = None
    limit: int = 20
    starting_after: str | None = None


class InvoiceFilters(Schema):
    customer: str | None = None
    subscription: str | None = None
    status: str | None = None
    limit: int = 20
    starting_after: str | None = None


def _choice(value: str | None, allowed: list[str], field: str) -> str | None:
    if value is not None and value not in allowed:
        raise ValidationFailed(
            f"{field} is one of: {', '.join(allowed)}.", details={"field": field}
        )
    return value


def _scoped(request: HttpRequest, queryset: Any, customer: str | None) -> Any:
    identity = identity_of(request)
    if customer is not None:
        return queryset.filter(customer_id=customer_ref(request, customer).pk)
    if not identity.is_operator:
        return queryset.filter(customer_id=identity.customer_pk)
    return queryset


def _list(page: Any, render: Any) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [render(item) for item in page.items],
        "has_more": page.has_more,
        "next_cursor": page.next_cursor,
    }


@router.get(
    "/subscriptions",
    response={200: SubscriptionList, **ERRORS},
    auth=_READ,
    tags=["subscriptions"],
    summary="List subscriptions, newest first",
)
def subscription_list(request: HttpRequest, filters: Query[SubscriptionFilters]) -> dict[str, Any]:
    status = _choice(filters.status, SubscriptionStatus.values, "status")
    queryset = _scoped(
        request, Subscription.objects.select_related("customer", "price__plan"), filters.customer
    )
    if status:
        queryset = queryset.filter(status=status)
    page = paginate(queryset, limit=filters.limit, starting_after=filters.starting_after)
    return _list(page, subscription_data)


@router.get(
    "/subscriptions/{subscription}",
    response={200: SubscriptionOut, **ERRORS},
    auth=_READ,
    tags=["subscriptions"],
    summary="Get a subscription",
)
def subscription_get(request: HttpRequest, subscription: str) -> dict[str, Any]:
    return subscription_data(_subscription(request, subscription))


def _subscription(request: HttpRequest, public_id: str) -> Subscription:
    """The caller's subscription ``public_id`` with its customer and plan (NotFound otherwise)."""
    found = (
        _scoped(request, Subscription.objects.select_related("customer", "price__plan"), None)
        .filter(public_id=public_id[:64])
        .first()
    )
    if found is None:
        raise NotFound("No subscription has this id.")
    return found


@router.post(
    "/subscriptions/{subscription}/seats",
    response={200: SubscriptionOut, **ERRORS},
    auth=ApiKeyAuth(scope="customers:write", operation=WRITE),
    tags=["subscriptions"],
    summary="Change the seats of a subscription on a per-seat price",
    description="More seats take effect now: the added seats' price for the rest of the period, "
    "prorated and net of the subscription's discount, is invoiced and charged to the customer's "
    "card (off session; if that fails the invoice is retried like a renewal). Fewer seats take "
    "effect at the end of the period (`scheduled_seats`). Refused with 409 "
    "`seats_below_members` under the organisation's members, 422 on a flat price.",
    openapi_extra=IDEMPOTENCY_HEADER,
)
@idempotent_post("subscriptions.seats")
def subscription_seats(
    request: HttpRequest, subscription: str, payload: SeatsIn
) -> Status[dict[str, Any]]:
    changed = services.subscription_seats_change(
        subscription=_subscription(request, subscription),
        seats=payload.seats,
        idempotency_key=request.headers.get(IDEMPOTENCY_KEY) or f"api-{secrets.token_hex(16)}",
        off_session=True,
    )
    return Status(200, subscription_data(_subscription(request, changed.public_id)))


def _invoice(invoice: Invoice) -> dict[str, Any]:
    return invoice_data(invoice, receipt_pdf_url=links.receipt_pdf_url(invoice))


@router.get(
    "/invoices",
    response={200: InvoiceList, **ERRORS},
    auth=_READ,
    tags=["invoices"],
    summary="List invoices, newest first",
)
def invoice_list(request: HttpRequest, filters: Query[InvoiceFilters]) -> dict[str, Any]:
    status = _choice(filters.status, InvoiceStatus.values, "status")
    queryset = _scoped(
        request, Invoice.objects.select_related("customer", "subscription"), filters.customer
    )
    if status:
        queryset = queryset.filter(status=status)
    if filters.subscription:
        queryset = queryset.filter(subscription__public_id=filters.subscription[:64])
    page = paginate(queryset, limit=filters.limit, starting_after=filters.starting_after)
    return _list(page, _invoice)


@router.get(
    "/invoices/{invoice}",
    response={200: InvoiceOut, **ERRORS},
    auth=_READ,
    tags=["invoices"],
    summary="Get an invoice, with a link to its receipt PDF",
)
def invoice_get(request: HttpRequest, invoice: str) -> dict[str, Any]:
    found = (
        _scoped(request, Invoice.objects.select_related("customer", "subscription"), None)
        .filter(public_id=invoice[:64])
        .first()
    )
    if found is None:
        raise NotFound("No invoice has this id.")
    return _invoice(found)


def _price(payload: CheckoutLinkIn) -> Price:
    prices = Price.objects.select_related("plan__product").filter(active=True)
    if payload.price:
        found = prices.filter(public_id=payload.price).first()
    elif payload.plan:
        found = prices.filter(plan__code=payload.plan, interval=payload.interval).first()
    else:
        raise ValidationFailed("Name a price, or a plan and interval.", details={"field": "price"})
    if found is None:
        raise NotFound("No price on sale matches.", details={"field": "price"})
    return found


def _link(link: links.SignedLink) -> dict[str, Any]:
    return {"url": link.url, "expires_at": iso(link.expires_at)}


@router.post(
    "/checkout-links",
    response={201: LinkOut, **ERRORS},
    auth=ApiKeyAuth(scope="customers:write", operation=WRITE),
    tags=["links"],
    summary="A link where a customer subscribes to a plan",
    description="Send the customer to `url`: they are signed in (no password needed), enter "
    "their card on the payment page, and come back to `success_url`. Works once, for 24 hours. "
    "`success_url` and `cancel_url` must be on a host in TOLLGATE_API_REDIRECT_HOSTS. The link "
    "signs in `user` (`usr_...`, an owner or admin of the customer's organisation), by default "
    "the account that opened the customer; anyone else is refused (422 `link_user_refused`), "
    "and so is the link if they are no longer an owner or admin when it is used. A "
    "`promotion_code` is checked now and filled in on the checkout, with its discount shown.",
    openapi_extra=IDEMPOTENCY_HEADER,
)
@idempotent_post("links.checkout")
def checkout_link(request: HttpRequest, payload: CheckoutLinkIn) -> Status[dict[str, Any]]:
    link = links.checkout_link_create(
        customer=customer_object(request, payload.customer),
        price=_price(payload),
        success_url=payload.success_url,
        cancel_url=payload.cancel_url,
        user=payload.user,
        promotion_code=payload.promotion_code,
    )
    return Status(201, _link(link))


@router.post(
    "/portal-links",
    response={201: LinkOut, **ERRORS},
    auth=ApiKeyAuth(scope="customers:write", operation=WRITE),
    tags=["links"],
    summary="A link into a customer's billing pages",
    description="Plan, card, invoices, plan changes and cancellation, signed in without a "
    "password as `user` (`usr_...`, an owner or admin of the customer's organisation; by "
    "default the account that opened the customer). Works once, for 5 minutes: create it when "
    "the customer clicks.",
    openapi_extra=IDEMPOTENCY_HEADER,
)
@idempotent_post("links.portal")
def portal_link(request: HttpRequest, payload: PortalLinkIn) -> Status[dict[str, Any]]:
    link = links.portal_link_create(
        customer=customer_object(request, payload.customer),
        return_url=payload.return_url,
        user=payload.user,
    )
    return Status(201, _link(link))
