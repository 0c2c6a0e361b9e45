"""Transactional outbox: side effects written with the change, delivered after commit by the worker.

Apps register a handler per message kind in ``AppConfig.ready``::

    outbox.register("email", deliver_email)

A handler receives the payload and must be idempotent for its dedupe key: delivery is at least once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import structlog
from django.db import IntegrityError, transaction

from tollgate.core import clock
from tollgate.core.models import OutboxMessage

log = structlog.get_logger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any] | None]
_handlers: dict[str, Handler] = {}

MAX_ATTEMPTS = 8
BATCH_SIZE = 100


def register(kind: str, handler: Handler) -> None:
    _handlers[kind] = handler


def retry_delay(attempts: int) -> dt.timedelta:
    """Exponential backoff: 30 s, 1 min, 2 min, ... capped at one hour."""
    return dt.timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


def outbox_enqueue(*, kind: str, payload: dict[str, Any], dedupe_key: str) -> OutboxMessage | None:
    """Record a side effect in the current transaction; returns None if the key was already used.

    Must be called inside ``transaction.atomic``: the message exists only if the change commits.
    """
    if kind not in _handlers:
        raise ValueError(f"no outbox handler registered for {kind!r}")
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError(
            "outbox_enqueue() must run inside the transaction that causes the effect"
        )
    try:
        with transaction.atomic():
            message = OutboxMessage.objects.create(
                kind=kind, payload=payload, dedupe_key=dedupe_key
            )
    except IntegrityError:
        log.info("outbox.duplicate", kind=kind)
        return None
    message_id = message.pk
    transaction.on_commit(lambda: _schedule(message_id))
    return message


def _schedule(message_id: int) -> None:
    from tollgate.core.tasks import outbox_deliver_task

    outbox_deliver_task(message_id)


def outbox_deliver(*, message_id: int) -> bool:
    """Deliver one message if it is still pending and due; True when it was delivered now."""
    with transaction.atomic():
        message = (
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(
                pk=message_id, status=OutboxMessage.Status.PENDING, available_at__lte=clock.now()
            )
            .first()
        )
        if message is None:
            return False
        handler = _handlers.get(message.kind)
        message.attempts += 1
        try:
            if handler is None:
                raise LookupError(f"no handler for {message.kind!r}")
            with transaction.atomic():  # a failing handler's writes roll back, ours still commit
                redacted = handler(message.payload)
        except Exception as exc:
            message.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            if message.attempts >= MAX_ATTEMPTS:
                message.status = OutboxMessage.Status.FAILED
            else:
                message.available_at = clock.now() + retry_delay(message.attempts)
            message.save(update_fields=["attempts", "last_error", "status", "available_at"])
            log.warning(
                "outbox.delivery_failed",
                kind=message.kind,
                message_id=message.pk,
                attempts=message.attempts,
                error=type(exc).__name__,
            )
            return False
        message.status = OutboxMessage.Status.DELIVERED
        message.delivered_at = clock.now()
        message.last_error = ""
        if redacted is not None:
            # Handlers return what may be kept after delivery (for example, an email without its body).
            message.payload = redacted
        message.save(update_fields=["attempts", "status", "delivered_at", "last_error", "payload"])
        log.info("outbox.delivered", kind=message.kind, message_id=message.pk)
        return True


def outbox_due_ids(*, limit: int = BATCH_SIZE) -> list[int]:
    return list(
        OutboxMessage.objects.filter(
            status=OutboxMessage.Status.PENDING, available_at__lte=clock.now()
        )
        .order_by("available_at")
        .values_list("pk", flat=True)[:limit]
    )


def outbox_sweep() -> int:
    """Deliver every due message (the safety net for a lost on-commit schedule or a retry)."""
    delivered = 0
    while ids := outbox_due_ids():
        progress = sum(outbox_deliver(message_id=message_id) for message_id in ids)
        delivered += progress
        if progress == 0:
            break
    return delivered
