"""Customers, their entitlements and the entitlement check, and reported usage."""

import json
from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Schema, Status

from tollgate.api.auth import CHECK, READ, USAGE, WRITE, ApiKeyAuth, cache_found
from tollgate.api.idempotency import OPENAPI as IDEMPOTENCY_HEADER
from tollgate.api.idempotency import idempotent_post
from tollgate.api.schemas import (
    CheckIn,
    CheckOut,
    CustomerIn,
    CustomerList,
    CustomerOut,
    CustomerPatch,
    EntitlementsOut,
    ErrorOut,
    MemberList,
    UsageIn,
    UsageOut,
)
from tollgate.billing.models import Customer
from tollgate.core.pagination import paginate
from tollgate.integrations import access, customers, usage
from tollgate.integrations.customers import CustomerNotFound, CustomerRef
from tollgate.integrations.keys import ApiIdentity
from tollgate.integrations.representations import customer_data, iso
from tollgate.organisations.selectors import members_of

router = Router(tags=["customers"])
ERRORS: dict[int, type[Schema]] = dict.fromkeys((400, 401, 403, 404, 409, 422, 429), ErrorOut)
# A check's body is a few dozen bytes; a larger one is left to the endpoint's own parsing.
CHECK_BODY_READ_MAX = 2048


def identity_of(request: HttpRequest) -> ApiIdentity:
    return request.auth  # type: ignore[attr-defined]


def customer_ref(request: HttpRequest, ref: str) -> CustomerRef:
    """The customer ``ref`` names, if the caller may see it (a customer's key: only its own)."""
    read = cache_found(request, customers.customer_resolve_cache_keys(ref))
    found = customers.customer_resolve(ref, found=read)
    identity = identity_of(request)
    if not identity.is_operator and found.pk != identity.customer_pk:
        raise CustomerNotFound()
    return found


def customer_object(request: HttpRequest, ref: str) -> Customer:
    return Customer.objects.get(pk=customer_ref(request, ref).pk)


class CheckReads:
    """A check's cache entries: the customer it names, read with the caller's key (nothing when
    the body is not what a check sends: the endpoint then refuses it or reads it itself), then
    that customer's entitlements and usage, read with the rate-limit count."""

    def with_key(self, request: HttpRequest) -> list[str]:
        try:
            if int(request.META.get("CONTENT_LENGTH") or 0) > CHECK_BODY_READ_MAX:
                return []
            body = json.loads(request.body)
        except (ValueError, RecursionError):
            return []
        ref = body.get("customer") if isinstance(body, dict) else None
        return customers.customer_resolve_cache_keys(ref)

    def with_count(self, request: HttpRequest, found: Mapping[str, Any]) -> list[str]:
        for value in found.values():
            if isinstance(value, CustomerRef):
                return access.entitlement_check_cache_keys(customer=value)
        return []


class CustomerFilters(Schema):
    limit: int = 20
    starting_after: str | None = None
    email: str | None = None
    external_id: str | None = None


@router.post(
    "/customers",
    response={200: CustomerOut, 201: CustomerOut, **ERRORS},
    auth=ApiKeyAuth(scope="customers:write", operation=WRITE),
    summary="Create a customer, or find it by your external id",
    description="With an `external_id` that a customer has already, returns that customer "
    "(200) and changes nothing; otherwise creates one (201) with an account that has no "
    "password. `customer.created` is sent to webhook endpoints.",
    openapi_extra=IDEMPOTENCY_HEADER,
)
@idempotent_post("customers.create")
def customer_create(request: HttpRequest, payload: CustomerIn) -> Status[dict[str, Any]]:
    found = customers.customer_create_or_find(
        email=payload.email,
        external_id=payload.external_id,
        name=payload.name,
        create_login=payload.create_login,
    )
    return Status(201 if found.created else 200, customer_data(found.customer))


@router.get(
    "/customers",
    response={200: CustomerList, **ERRORS},
    auth=ApiKeyAuth(scope="billing:read", operation=READ),
    summary="List customers, newest first",
)
def customer_list(request: HttpRequest, filters: Query[CustomerFilters]) -> dict[str, Any]:
    queryset = Customer.objects.all()
    identity = identity_of(request)
    if not identity.is_operator:
        queryset = queryset.filter(api_keys__pk=identity.key_pk)
    if filters.email:
        queryset = queryset.filter(email__iexact=filters.email)
    if filters.external_id:
        queryset = queryset.filter(external_id=filters.external_id)
    page = paginate(queryset, limit=filters.limit, starting_after=filters.starting_after)
    return {
        "object": "list",
        "data": [customer_data(customer) for customer in page.items],
        "has_more": page.has_more,
        "next_cursor": page.next_cursor,
    }


@router.get(
    "/customers/{customer}",
    response={200: CustomerOut, **ERRORS},
    auth=ApiKeyAuth(scope="billing:read", operation=READ),
    summary="Get a customer by its id or your external id",
)
def customer_get(request: HttpRequest, customer: str) -> dict[str, Any]:
    return customer_data(customer_object(request, customer))


@router.get(
    "/customers/{customer}/members",
    response={200: MemberList, **ERRORS},
    auth=ApiKeyAuth(scope="billing:read", operation=READ),
    summary="The people of a customer's organisation and their roles",
    description="Owners first, then admins, then members. An owner's or admin's `id` is what "
    "checkout and portal links take as `user`; every member's is what the entitlements API "
    "answers for.",
)
def customer_members(request: HttpRequest, customer: str) -> dict[str, Any]:
    found = customer_object(request, customer)
    members = members_of(organisation=found.organisation) if found.organisation is not None else []
    return {
        "object": "list",
        "data": [
            {
                "object": "member",
                "id": member.user.public_id,
                "email": member.user.email,
                "name": member.user.name,
                "role": member.role,
                "since": iso(member.created_at),
            }
            for member in members
        ],
    }


@router.patch(
    "/customers/{customer}",
    response={200: CustomerOut, **ERRORS},
    auth=ApiKeyAuth(scope="customers:write", operation=WRITE),
    summary="Change a customer's email, name or external id",
)
def customer_patch(request: HttpRequest, customer: str, payload: CustomerPatch) -> dict[str, Any]:
    updated = customers.customer_update(
        customer=customer_object(request, customer),
        email=payload.email,
        name=payload.name,
        external_id=payload.external_id,
    )
    return customer_data(updated)


@router.get(
    "/customers/{customer}/entitlements",
    response={200: EntitlementsOut, **ERRORS},
    auth=ApiKeyAuth(scope="entitlements:read", operation=READ),
    tags=["entitlements"],
    summary="What a customer is entitled to, with their usage",
)
def entitlements_get(request: HttpRequest, customer: str) -> dict[str, Any]:
    return access.entitlements_view(customer=customer_ref(request, customer))


@router.post(
    "/entitlements/check",
    response={200: CheckOut, **ERRORS},
    auth=ApiKeyAuth(scope="entitlements:read", operation=CHECK, reads=CheckReads()),
    tags=["entitlements"],
    summary="May a customer use a feature, or more of a limit, now?",
    description="The hot path: answered from a shared cache, without a database query once "
    "warm. A refusal says why, and offers the cheapest plan that would allow it. It changes "
    "nothing, so `Idempotency-Key` is only needed to pin an answer.",
    openapi_extra=IDEMPOTENCY_HEADER,
)
@idempotent_post("entitlements.check")
def entitlements_check(request: HttpRequest, payload: CheckIn) -> Status[dict[str, Any]]:
    customer = customer_ref(request, payload.customer)
    result = access.entitlement_check(
        customer=customer,
        feature=payload.feature,
        quantity=payload.quantity,
        found=cache_found(request, access.entitlement_check_cache_keys(customer=customer)),
    )
    return Status(200, result.as_dict())


@router.post(
    "/usage",
    response={200: UsageOut, **ERRORS},
    auth=ApiKeyAuth(scope="usage:write", operation=USAGE),
    tags=["usage"],
    summary="Report usage of metered limits (up to 1,000 events)",
    description="Each event's `id` makes a resend harmless: it is counted under `duplicates`. "
    "The whole batch is refused (422, naming the event) if one event is invalid.",
    openapi_extra=IDEMPOTENCY_HEADER,
)
@idempotent_post("usage.report")
def usage_report(request: HttpRequest, payload: UsageIn) -> Status[dict[str, Any]]:
    refs: dict[str, CustomerRef] = {}
    reports = []
    for event in payload.events:
        if event.customer not in refs:
            refs[event.customer] = customer_ref(request, event.customer)
        reports.append(
            usage.UsageReport(
                event_id=event.id,
                customer=refs[event.customer],
                metric=event.metric,
                quantity=event.quantity,
                timestamp=event.timestamp,
            )
        )
    recorded = usage.usage_record(reports=reports)
    return Status(200, {"accepted": recorded.accepted, "duplicates": recorded.duplicates})
