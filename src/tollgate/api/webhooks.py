"""Webhook endpoints managed by the operator's product (scope ``webhooks:manage``), as staff do
in the staff console: register, change, enable or disable, rotate the signing secret, and see
recent deliveries with their attempts."""

import datetime as dt
from typing import Any

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from pydantic import StrictBool

from tollgate.api.auth import READ, WRITE, ApiKeyAuth
from tollgate.api.customers import ERRORS
from tollgate.api.idempotency import OPENAPI as IDEMPOTENCY_HEADER
from tollgate.api.idempotency import idempotent_post
from tollgate.core.errors import NotFound
from tollgate.core.events import EVENT_TYPES
from tollgate.core.pagination import paginate
from tollgate.integrations import webhooks
from tollgate.integrations.models import WebhookDelivery, WebhookEndpoint
from tollgate.integrations.representations import iso

router = Router(tags=["webhooks"])
_READ = ApiKeyAuth(scope="webhooks:manage", operation=READ)
_WRITE = ApiKeyAuth(scope="webhooks:manage", operation=WRITE)


class EndpointOut(Schema):
    object: str = "webhook_endpoint"
    id: str
    url: str
    description: str
    event_types: list[str] = Field(description="Empty: every event type.")
    enabled: bool
    disabled_reason: str
    created_at: str


class EndpointCreated(EndpointOut):
    secret: str = Field(description="The signing secret, shown this once.")


class EndpointIn(Schema):
    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "url": "https://app.example.com/hooks/tollgate",
                    "event_types": ["subscription.updated", "entitlements.updated"],
                    "description": "Product backend",
                }
            ]
        }
    }
    url: str = Field(max_length=2000)
    event_types: list[str] = Field(default_factory=list, description=", ".join(EVENT_TYPES))
    description: str = Field("", max_length=200)


class EndpointPatch(Schema):
    url: str | None = Field(None, max_length=2000)
    event_types: list[str] | None = None
    description: str | None = Field(None, max_length=200)
    enabled: StrictBool | None = None


class RotateIn(Schema):
    model_config = {"json_schema_extra": {"examples": [{"overlap_hours": 24}]}}
    overlap_hours: int = Field(24, ge=0, le=168, description="How long the old secret signs too.")


class SecretOut(Schema):
    secret: str


class EndpointList(Schema):
    object: str = "list"
    data: list[EndpointOut]
    has_more: bool
    next_cursor: str | None


class AttemptOut(Schema):
    attempted_at: str
    status_code: int | None
    latency_ms: int
    succeeded: bool
    error: str
    response_excerpt: str


class DeliveryOut(Schema):
    id: str = Field(description="The event's id: the `webhook-id` header.")
    type: str
    status: str
    attempts: int
    next_attempt_at: str | None
    created_at: str
    tries: list[AttemptOut]


class Paging(Schema):
    limit: int = 20
    starting_after: str | None = None


def _endpoint(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "object": "webhook_endpoint",
        "id": endpoint.public_id,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": list(endpoint.event_types),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "created_at": iso(endpoint.created_at),
    }


def _found(endpoint_id: str) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(public_id=endpoint_id[:64]).first()
    if endpoint is None:
        raise NotFound("No webhook endpoint has this id.")
    return endpoint


def _delivery(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.event.public_id,
        "type": delivery.event.type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": iso(delivery.next_attempt_at),
        "created_at": iso(delivery.created_at),
        "tries": [
            {
                "attempted_at": iso(attempt.attempted_at),
                "status_code": attempt.status_code,
                "latency_ms": attempt.latency_ms,
                "succeeded": attempt.succeeded,
                "error": attempt.error,
                "response_excerpt": attempt.response_excerpt,
            }
            for attempt in delivery.tries.all()
        ],
    }


@router.get(
    "/webhook-endpoints",
    response={200: EndpointList, **ERRORS},
    auth=_READ,
    summary="List webhook endpoints, newest first",
)
def endpoint_list(request: HttpRequest, filters: Query[Paging]) -> dict[str, Any]:
    page = paginate(
        WebhookEndpoint.objects.all(), limit=filters.limit, starting_after=filters.starting_after
    )
    return {
        "object": "list",
        "data": [_endpoint(endpoint) for endpoint in page.items],
        "has_more": page.has_more,
        "next_cursor": page.next_cursor,
    }


@router.post(
    "/webhook-endpoints",
    response={201: EndpointCreated, **ERRORS},
    auth=_WRITE,
    summary="Register a webhook endpoint (its signing secret is returned once)",
    description="The URL must be http(s) and resolve only to public addresses (unless the "
    "installation allows private targets).",
    openapi_extra=IDEMPOTENCY_HEADER,
)
@idempotent_post("webhooks.endpoint_create")
def endpoint_create(request: HttpRequest, payload: EndpointIn) -> Status[dict[str, Any]]:
    endpoint, secret = webhooks.webhook_endpoint_create(
        url=payload.url,
        event_types=payload.event_types,
        description=payload.description,
        actor=None,
    )
    return Status(201, {**_endpoint(endpoint), "secret": secret})


@router.get(
    "/webhook-endpoints/{endpoint}",
    response={200: EndpointOut, **ERRORS},
    auth=_READ,
    summary="Get a webhook endpoint",
)
def endpoint_get(request: HttpRequest, endpoint: str) -> dict[str, Any]:
    return _endpoint(_found(endpoint))


@router.patch(
    "/webhook-endpoints/{endpoint}",
    response={200: EndpointOut, **ERRORS},
    auth=_WRITE,
    summary="Change a webhook endpoint, or enable or disable it",
    description="Enabling sends the deliveries that waited while it was disabled.",
)
def endpoint_patch(request: HttpRequest, endpoint: str, payload: EndpointPatch) -> dict[str, Any]:
    updated = webhooks.webhook_endpoint_update(
        endpoint=_found(endpoint),
        actor=None,
        url=payload.url,
        description=payload.description,
        event_types=payload.event_types,
        enabled=payload.enabled,
    )
    return _endpoint(updated)


@router.post(
    "/webhook-endpoints/{endpoint}/rotate-secret",
    response={200: SecretOut, **ERRORS},
    auth=_WRITE,
    summary="Give an endpoint a new signing secret (the old one signs too for the overlap)",
    openapi_extra=IDEMPOTENCY_HEADER,
)
@idempotent_post("webhooks.secret_rotate")
def endpoint_rotate(
    request: HttpRequest, endpoint: str, payload: RotateIn
) -> Status[dict[str, Any]]:
    secret = webhooks.webhook_endpoint_secret_rotate(
        endpoint=_found(endpoint), overlap=dt.timedelta(hours=payload.overlap_hours), actor=None
    )
    return Status(200, {"secret": secret})


@router.get(
    "/webhook-endpoints/{endpoint}/deliveries",
    response={200: list[DeliveryOut], **ERRORS},
    auth=_READ,
    summary="An endpoint's latest deliveries with every attempt",
)
def endpoint_deliveries(request: HttpRequest, endpoint: str) -> list[dict[str, Any]]:
    return [
        _delivery(delivery)
        for delivery in webhooks.webhook_deliveries_recent(endpoint=_found(endpoint))
    ]
