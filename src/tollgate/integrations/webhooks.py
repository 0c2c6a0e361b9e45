"""Outgoing webhook endpoints: registering, editing, enabling, rotating secrets, resending.

Each service is one durable transaction with its audit event; secrets never reach the audit trail or
the logs. Endpoint and delivery rows are locked in the order endpoint -> delivery. Sending and
retrying is ``webhook_delivery``; where a request may go is ``webhook_targets``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Prefetch, QuerySet

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.core import clock
from tollgate.core.errors import Conflict, ValidationFailed
from tollgate.core.events import EVENT_TYPES
from tollgate.integrations.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tollgate.integrations.webhook_delivery import deliveries_schedule
from tollgate.integrations.webhook_targets import target_resolve

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32
ROTATION_OVERLAP_MAX = dt.timedelta(days=7)
DESCRIPTION_MAX_LENGTH = 200
DISABLED_BY_STAFF = "Disabled by staff."


class WebhookEventTypeUnknown(ValidationFailed):
    code = "webhook_event_type_unknown"
    default_message = "Choose event types from the list, or none for every type."


class WebhookSecretChanged(Conflict):
    code = "webhook_secret_changed"
    default_message = (
        "The secret was rotated meanwhile (the form was sent twice?); its new secret was shown on "
        "the page that answered. Rotate again if it was lost."
    )


class WebhookEndpointDisabled(Conflict):
    code = "webhook_endpoint_disabled"
    default_message = "This endpoint is disabled; enable it, then resend."


def webhook_secret_new() -> str:
    """A signing secret as Standard Webhooks writes it: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_fingerprint(endpoint: WebhookEndpoint) -> str:
    """A short digest that tells the endpoint's secrets apart without revealing them."""
    return hashlib.sha256(endpoint.secret.encode()).hexdigest()[:12]


def _event_types_clean(event_types: Iterable[str]) -> list[str]:
    chosen = sorted(set(event_types))
    unknown = [name for name in chosen if name not in EVENT_TYPES]
    if unknown:
        raise WebhookEventTypeUnknown(
            f"Unknown event type {unknown[0]!r}; choose from {', '.join(EVENT_TYPES)}.",
            details={"field": "event_types", "unknown": unknown},
        )
    return chosen


def _description_clean(description: str) -> str:
    cleaned = description.strip()
    if len(cleaned) > DESCRIPTION_MAX_LENGTH:
        raise ValidationFailed(
            f"Use a description of at most {DESCRIPTION_MAX_LENGTH} characters.",
            details={"field": "description"},
        )
    return cleaned


def _url_clean(url: str) -> str:
    cleaned = url.strip()
    target_resolve(url=cleaned)
    return cleaned


def webhook_endpoint_create(
    *, url: str, event_types: Iterable[str], description: str = "", actor: User | None
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint for ``event_types`` (none: every type) and return it with its signing
    secret, to be shown once. The URL must be http(s) and lead only to public addresses (unless
    ``WEBHOOKS_ALLOW_PRIVATE_TARGETS``); a refusal is a ``ValidationFailed`` that says why."""
    cleaned_url = _url_clean(url)
    types = _event_types_clean(event_types)
    secret = webhook_secret_new()
    with transaction.atomic(durable=True):
        endpoint = WebhookEndpoint.objects.create(
            url=cleaned_url,
            description=_description_clean(description),
            event_types=types,
            secret=secret,
        )
        audit_record(
            action="integrations.webhook_endpoint_created",
            actor=actor,
            target=endpoint,
            details={"url": endpoint.url, "event_types": types},
        )
    return endpoint, secret


def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    actor: User | None,
    url: str | None = None,
    description: str | None = None,
    event_types: Iterable[str] | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    """Change what is given (None: unchanged). Disabling stops its deliveries (they wait, pending);
    enabling clears the reason it was disabled and makes its waiting deliveries due now."""
    changes: dict[str, object] = {}
    if url is not None:
        changes["url"] = _url_clean(url)
    if description is not None:
        changes["description"] = _description_clean(description)
    if event_types is not None:
        changes["event_types"] = _event_types_clean(event_types)
    with transaction.atomic(durable=True):
        current = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        changes = {
            name: value for name, value in changes.items() if getattr(current, name) != value
        }
        if enabled is not None and enabled != current.enabled:
            changes["enabled"] = enabled
            changes["disabled_reason"] = "" if enabled else DISABLED_BY_STAFF
        if not changes:
            return current
        for name, value in changes.items():
            setattr(current, name, value)
        current.save(update_fields=list(changes))
        if changes.get("enabled") is True:
            _deliveries_resume_locked(current)
        audit_record(
            action="integrations.webhook_endpoint_updated",
            actor=actor,
            target=current,
            details={"changed": sorted(changes), **_public(changes)},
        )
    return current


def _public(changes: dict[str, object]) -> dict[str, object]:
    return {name: value for name, value in changes.items() if name != "disabled_reason"}


def _deliveries_resume_locked(endpoint: WebhookEndpoint) -> None:
    waiting = list(
        WebhookDelivery.objects.filter(
            endpoint=endpoint, status=WebhookDelivery.Status.PENDING
        ).values_list("pk", flat=True)
    )
    if waiting:
        WebhookDelivery.objects.filter(pk__in=waiting).update(next_attempt_at=clock.now())
        transaction.on_commit(lambda: deliveries_schedule(waiting))


def webhook_endpoint_secret_rotate(
    *,
    endpoint: WebhookEndpoint,
    overlap: dt.timedelta,
    actor: User | None,
    replacing: str | None = None,
) -> str:
    """Give the endpoint a new signing secret and return it, to be shown once. For ``overlap``
    (at most ``ROTATION_OVERLAP_MAX``) the current secret signs too, so the receiver can switch
    without losing a request; with no overlap it stops signing at once. With ``replacing`` (the
    ``secret_fingerprint`` the caller saw) a secret that changed meanwhile is not rotated again:
    a form sent twice must not push the secret the receiver knows out of the overlap."""
    if not dt.timedelta(0) <= overlap <= ROTATION_OVERLAP_MAX:
        raise ValidationFailed(
            f"Keep the old secret for no more than {ROTATION_OVERLAP_MAX.days} days.",
            details={"field": "overlap"},
        )
    secret = webhook_secret_new()
    with transaction.atomic(durable=True):
        current = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if replacing is not None and replacing != secret_fingerprint(current):
            raise WebhookSecretChanged()
        current.previous_secret = current.secret if overlap else ""
        current.previous_secret_expires_at = clock.now() + overlap if overlap else None
        current.secret = secret
        current.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
        audit_record(
            action="integrations.webhook_secret_rotated",
            actor=actor,
            target=current,
            details={"overlap_seconds": int(overlap.total_seconds())},
        )
    return secret


def webhook_delivery_resend(*, delivery: WebhookDelivery, actor: User | None) -> WebhookDelivery:
    """Send the delivery again now, with the same ``webhook-id``: it is pending again, with a
    fresh retry schedule if this attempt fails. Refused while its endpoint is disabled."""
    with transaction.atomic(durable=True):
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=delivery.endpoint_id)
        if not endpoint.enabled:
            raise WebhookEndpointDisabled()
        current = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        previous = current.status
        current.status = WebhookDelivery.Status.PENDING
        current.attempts = 0
        current.next_attempt_at, current.completed_at = clock.now(), None
        current.save(update_fields=["status", "attempts", "next_attempt_at", "completed_at"])
        audit_record(
            action="integrations.webhook_delivery_resent",
            actor=actor,
            target=endpoint,
            details={"event": delivery.event.public_id, "was": previous},
        )
        transaction.on_commit(lambda: deliveries_schedule([current.pk]))
    return current


# --- Reads (the staff console) -------------------------------------------------------------------------
DELIVERIES_SHOWN = 50


def webhook_endpoints() -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.all()


def webhook_deliveries(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    """The endpoint's deliveries, newest first, with their events and attempts."""
    return (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .prefetch_related(
            Prefetch("tries", queryset=WebhookAttempt.objects.order_by("-attempted_at", "-pk"))
        )
        .order_by("-created_at", "-pk")
    )


def webhook_deliveries_recent(
    *, endpoint: WebhookEndpoint, limit: int = DELIVERIES_SHOWN
) -> list[WebhookDelivery]:
    """The endpoint's latest ``limit`` deliveries, newest first, with their events and attempts."""
    return list(webhook_deliveries(endpoint=endpoint)[:limit])
