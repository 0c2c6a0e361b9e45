"""Outgoing webhooks from event to receiver: recording events, signing, sending, retrying.

An event published by the billing engine (``core.events``) reaches ``webhook_event_record`` through
the outbox after its change commits. It is stored once (``WebhookEvent.source_key`` is the
publisher's key) with the object's state as it is then, and gets one delivery per enabled endpoint
that wants its type. Each delivery is sent at once and, until the receiver answers 2xx, again on
``RETRY_SCHEDULE``; a delivery whose schedule runs out fails, and its endpoint is disabled (audited,
staff are emailed) until staff enable it again.

Requests follow Standard Webhooks: the body is ``{"type", "timestamp", "data"}``, ``webhook-id`` is
the event's public id (the same for every endpoint and every retry, so receivers dedupe on it), and
``webhook-signature`` holds the signature with the endpoint's secret, and with its previous secret
too while a rotation's overlap lasts.

Several workers may send at once: a delivery is claimed in a short transaction (``SELECT ... FOR
UPDATE SKIP LOCKED`` on PostgreSQL) that moves its next attempt a lease ahead, then sent with no
lock held, then its outcome recorded in a second transaction. A worker that dies after the claim
only delays the delivery by the lease.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction
from standardwebhooks.webhooks import Webhook

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing.entitlements import GRANTING
from tollgate.billing.models import Customer, Invoice, Refund, Subscription
from tollgate.core import clock
from tollgate.core.errors import ValidationFailed
from tollgate.core.redaction import scrub_text
from tollgate.integrations.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from tollgate.integrations.representations import (
    customer_data,
    invoice_data,
    iso,
    refund_data,
    subscription_data,
)
from tollgate.integrations.webhook_targets import WebhookTargetRefused, target_post, target_resolve
from tollgate.notifications.services import absolute_url, email_send_template

log = structlog.get_logger(__name__)

# The wait before each attempt: 9 attempts over 68 h 36 min (about three days) in all.
RETRY_SCHEDULE = (
    dt.timedelta(0),
    dt.timedelta(minutes=1),
    dt.timedelta(minutes=5),
    dt.timedelta(minutes=30),
    dt.timedelta(hours=2),
    dt.timedelta(hours=6),
    dt.timedelta(hours=12),
    dt.timedelta(hours=24),
    dt.timedelta(hours=24),
)
USER_AGENT = "Tollgate-Webhooks/1"
EXCERPT_LENGTH = 500
SEND_LIMIT = 500  # deliveries one sweep attempts at most; the next sweep goes on


# --- Events ----------------------------------------------------------------------------------------------
def webhook_event_record(payload: dict[str, Any]) -> None:
    """Outbox handler of ``events.published``: store the event with the object's current state and
    a delivery for each enabled endpoint that wants its type, and send them after commit.

    Idempotent: an event already stored under the publisher's key is not stored again. Nothing is
    stored when no endpoint wants the event or the object no longer exists."""
    event_type = str(payload["type"])
    source_key = f"{event_type}:{payload['key']}"[:200]
    if WebhookEvent.objects.filter(source_key=source_key).exists():
        return
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(enabled=True)
        if not endpoint.event_types or event_type in endpoint.event_types
    ]
    if not endpoints:
        return
    data = event_data(
        event_type=event_type,
        object_type=str(payload["object"]),
        object_id=str(payload["id"]),
        extra=payload.get("extra") or {},
    )
    if data is None:
        log.info("webhooks.event_object_gone", type=event_type, object=payload["object"])
        return
    now = clock.now()
    event = WebhookEvent.objects.create(
        type=event_type, source_key=source_key, data=data, created_at=now
    )
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(event=event, endpoint=endpoint, next_attempt_at=now, created_at=now)
        for endpoint in endpoints
    )
    delivery_ids = [delivery.pk for delivery in deliveries]
    transaction.on_commit(lambda: deliveries_schedule(delivery_ids))


def deliveries_schedule(delivery_ids: list[int]) -> None:
    """Have a worker send these deliveries now (after the commit that created or reset them)."""
    from tollgate.integrations.tasks import webhook_deliveries_send_task

    webhook_deliveries_send_task(delivery_ids)


def event_data(
    *, event_type: str, object_type: str, object_id: str, extra: dict[str, Any]
) -> dict[str, Any] | None:
    """What an event carries: the JSON form of its object now (None if it is gone), with the
    publisher's ``extra`` beside it; ``entitlements.updated`` adds what the customer's subscription
    grants."""
    data = _OBJECTS[object_type](object_id)
    if data is None:
        return None
    if event_type == "entitlements.updated":
        data["entitlements"] = _entitlements(object_id)
    return {**extra, **data}


def _customer(public_id: str) -> dict[str, Any] | None:
    found = Customer.objects.filter(public_id=public_id).first()
    return None if found is None else customer_data(found)


def _subscription(public_id: str) -> dict[str, Any] | None:
    found = (
        Subscription.objects.select_related("customer", "price__plan")
        .filter(public_id=public_id)
        .first()
    )
    return None if found is None else subscription_data(found)


def _invoice(public_id: str) -> dict[str, Any] | None:
    found = (
        Invoice.objects.select_related("customer", "subscription")
        .filter(public_id=public_id)
        .first()
    )
    return None if found is None else invoice_data(found)


def _refund(public_id: str) -> dict[str, Any] | None:
    found = (
        Refund.objects.select_related("payment__invoice__customer")
        .filter(public_id=public_id)
        .first()
    )
    return None if found is None else refund_data(found)


_OBJECTS: dict[str, Callable[[str], dict[str, Any] | None]] = {
    "customer": _customer,
    "subscription": _subscription,
    "invoice": _invoice,
    "refund": _refund,
}


def _entitlements(customer_id: str) -> dict[str, Any]:
    """The customer's latest subscription, its plan and status, and whether it grants the plan."""
    latest = (
        Subscription.objects.select_related("price__plan")
        .filter(customer__public_id=customer_id)
        .order_by("-created_at", "-pk")
        .first()
    )
    if latest is None:
        return {"subscription": None, "plan": None, "status": None, "active": False}
    return {
        "subscription": latest.public_id,
        "plan": latest.price.plan.code,
        "status": latest.status,
        "active": latest.status in GRANTING,
    }


# --- Requests ------------------------------------------------------------------------------------------
def webhook_body(event: WebhookEvent) -> bytes:
    """The request body of ``event``: the same bytes for every endpoint and attempt."""
    document = {"type": event.type, "timestamp": iso(event.created_at), "data": event.data}
    return json.dumps(document, separators=(",", ":")).encode()


def webhook_headers(
    *, endpoint: WebhookEndpoint, event: WebhookEvent, body: bytes, at: dt.datetime
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt at ``at``, signed with every secret of the
    endpoint that is valid then (space-separated signatures)."""
    signatures = " ".join(
        Webhook(secret).sign(event.public_id, at, body) for secret in signing_secrets(endpoint, at)
    )
    return {
        "webhook-id": event.public_id,
        "webhook-timestamp": str(math.floor(at.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def signing_secrets(endpoint: WebhookEndpoint, at: dt.datetime) -> list[str]:
    """The endpoint's secret, and its previous one while the rotation's overlap lasts."""
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and at < expires:
        return [endpoint.secret, endpoint.previous_secret]
    return [endpoint.secret]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request came to: the receiver's answer, or why there was none."""

    status_code: int | None
    latency_ms: int
    excerpt: str = ""
    error: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def webhook_send(*, endpoint: WebhookEndpoint, event: WebhookEvent, at: dt.datetime) -> Outcome:
    """Send ``event`` to ``endpoint`` once; every failure is in the outcome, none is raised."""
    body = webhook_body(event)
    started = time.monotonic()
    status_code, excerpt, error = None, "", ""
    try:
        target = target_resolve(url=endpoint.url)
        response = target_post(
            target=target,
            body=body,
            headers=webhook_headers(endpoint=endpoint, event=event, body=body, at=at),
            timeout=settings.WEBHOOKS_TIMEOUT_SECONDS,
        )
    except WebhookTargetRefused as exc:
        error = f"Refused: {exc.message}"
    except ValidationFailed as exc:
        error = exc.message
    except (OSError, http.client.HTTPException, ValueError) as exc:
        error = scrub_text(f"{type(exc).__name__}: {exc}")
    else:
        status_code = response.status
        excerpt = scrub_text(response.body.decode("utf-8", errors="replace"))[:EXCERPT_LENGTH]
    latency_ms = round((time.monotonic() - started) * 1000)
    return Outcome(status_code=status_code, latency_ms=latency_ms, excerpt=excerpt, error=error)


# --- Sending and retrying ----------------------------------------------------------------------------
def webhook_deliveries_send(*, delivery_ids: list[int]) -> int:
    """Attempt these deliveries now, those still pending and due; returns how many were sent."""
    sent = 0
    for delivery_id in delivery_ids:
        delivery = _claim(delivery_id=delivery_id)
        if delivery is not None:
            _attempt(delivery)
            sent += 1
    return sent


def webhook_deliveries_send_due(*, limit: int = SEND_LIMIT) -> int:
    """Attempt pending deliveries whose next attempt is due, oldest first, at most ``limit`` (the
    periodic sweep: retries, and any send lost with a worker); returns how many were sent."""
    sent = 0
    while sent < limit and (delivery := _claim(delivery_id=None)) is not None:
        _attempt(delivery)
        sent += 1
    return sent


def _claim(*, delivery_id: int | None) -> WebhookDelivery | None:
    """Take one due delivery (this one, or the oldest due) for this worker: its next attempt moves
    a lease ahead, so no other worker sends it meanwhile. None if none is due or free."""
    now = clock.now()
    with transaction.atomic(durable=True):
        due = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint", "event")
            .filter(
                status=WebhookDelivery.Status.PENDING,
                next_attempt_at__lte=now,
                endpoint__enabled=True,
            )
        )
        if delivery_id is not None:
            due = due.filter(pk=delivery_id)
        delivery = due.order_by("next_attempt_at", "pk").first()
        if delivery is not None:
            delivery.next_attempt_at = now + _lease()
            delivery.save(update_fields=["next_attempt_at"])
    return delivery


def _attempt(delivery: WebhookDelivery) -> WebhookAttempt:
    """Send a claimed delivery (no lock held meanwhile) and record what came of it."""
    now = clock.now()
    outcome = webhook_send(endpoint=delivery.endpoint, event=delivery.event, at=now)
    return _attempt_record(delivery=delivery, outcome=outcome, at=now)


def _lease() -> dt.timedelta:
    """How long a claimed delivery is left to its worker: a request takes at most two timeouts
    (connecting, then reading)."""
    return dt.timedelta(seconds=2 * settings.WEBHOOKS_TIMEOUT_SECONDS + 60)


def _attempt_record(
    *, delivery: WebhookDelivery, outcome: Outcome, at: dt.datetime
) -> WebhookAttempt:
    """Keep the attempt and move the delivery on: succeeded, retried at its next step of
    ``RETRY_SCHEDULE``, or failed when the schedule is used up (which disables its endpoint).
    Locks endpoint -> delivery, the order every webhook write takes."""
    with transaction.atomic(durable=True):
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=delivery.endpoint_id)
        current = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        attempt = WebhookAttempt.objects.create(
            delivery=current,
            attempted_at=at,
            status_code=outcome.status_code,
            latency_ms=outcome.latency_ms,
            response_excerpt=outcome.excerpt,
            error=outcome.error[:200],
            succeeded=outcome.succeeded,
        )
        if current.status != WebhookDelivery.Status.PENDING:
            return attempt  # settled meanwhile by another worker's attempt: the outcome stays
        current.attempts += 1
        if outcome.succeeded:
            current.status = WebhookDelivery.Status.SUCCEEDED
            current.next_attempt_at, current.completed_at = None, clock.now()
        elif current.attempts < len(RETRY_SCHEDULE):
            current.next_attempt_at = at + RETRY_SCHEDULE[current.attempts]
        else:
            current.status = WebhookDelivery.Status.FAILED
            current.next_attempt_at, current.completed_at = None, clock.now()
            _endpoint_disable_locked(endpoint=endpoint, delivery=current, event=delivery.event)
        current.save(update_fields=["attempts", "status", "next_attempt_at", "completed_at"])
    log.info(
        "webhooks.attempted",
        endpoint=endpoint.public_id,
        event_id=delivery.event.public_id,
        status_code=outcome.status_code,
        succeeded=outcome.succeeded,
        attempts=current.attempts,
    )
    return attempt


def _endpoint_disable_locked(
    *, endpoint: WebhookEndpoint, delivery: WebhookDelivery, event: WebhookEvent
) -> None:
    """An endpoint that let a delivery fail for the whole schedule is disabled (audited, staff
    emailed); its other deliveries wait, pending, until it is enabled again."""
    if not endpoint.enabled:
        return
    endpoint.enabled = False
    endpoint.disabled_reason = (
        f"Disabled automatically: {event.public_id} ({event.type}) was not accepted after "
        f"{delivery.attempts} attempts over about three days."
    )[:200]
    endpoint.save(update_fields=["enabled", "disabled_reason"])
    audit_record(
        action="integrations.webhook_endpoint_disabled",
        target=endpoint,
        details={"reason": "deliveries_failing", "event": event.public_id},
    )
    staff_notify_endpoint_disabled(endpoint=endpoint)


def staff_notify_endpoint_disabled(*, endpoint: WebhookEndpoint) -> None:
    """Email every active staff member that ``endpoint`` was disabled (in the caller's
    transaction, once per staff member and occurrence)."""
    now = clock.now()
    context = {
        "endpoint_id": endpoint.public_id,
        "url": endpoint.url,
        "description": endpoint.description,
        "reason": endpoint.disabled_reason,
        "endpoint_url": absolute_url("staff:webhook_endpoint", endpoint.public_id),
    }
    for staff in User.objects.filter(is_staff=True, is_active=True).order_by("pk"):
        email_send_template(
            to=staff.email,
            template="webhook_endpoint_disabled",
            context=context,
            dedupe_key=f"webhook_endpoint_disabled:{endpoint.public_id}:{staff.public_id}:"
            f"{now.isoformat()}",
        )
