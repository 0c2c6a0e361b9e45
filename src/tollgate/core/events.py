"""Events for the operator's product (``subscription.updated``, ``invoice.paid``, ...).

Apps publish an event in the transaction of the change it reports; it is an outbox message, so it
exists only if the change commits, and is fanned out to the webhook endpoints after commit by
whoever registered the ``events.published`` handler (the integrations app). Publishers name the
object the event is about; its current state is read when the event is delivered.
"""

from __future__ import annotations

from typing import Any

from tollgate.core import outbox

OUTBOX_KIND = "events.published"

EVENT_TYPES = (
    "customer.created",
    "customer.updated",
    "subscription.created",
    "subscription.updated",
    "subscription.canceled",
    "subscription.past_due",
    "subscription.resumed",
    "invoice.paid",
    "invoice.payment_failed",
    "refund.created",
    "entitlements.updated",
    "usage.limit_near",
)


def event_publish(
    *,
    event_type: str,
    object_type: str,
    object_id: str,
    key: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Publish ``event_type`` about the ``object_type`` (``customer``, ``subscription``,
    ``invoice``, ``refund``) whose public id is ``object_id``, in the current transaction. ``key``
    names this occurrence: publishing the same key twice publishes one event. ``extra`` is added
    to the event's data as it is (e.g. the metric of ``usage.limit_near``)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    outbox.outbox_enqueue(
        kind=OUTBOX_KIND,
        payload={
            "type": event_type,
            "object": object_type,
            "id": object_id,
            "key": key,
            "extra": extra or {},
        },
        dedupe_key=f"{OUTBOX_KIND}:{event_type}:{key}"[:200],
    )
