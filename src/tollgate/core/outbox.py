"""Transactional outbox: side effects written with the change, delivered after commit by the worker.

Apps register a handler per message kind in ``AppConfig.ready``::

    outbox.register("email", deliver_email)

A handler receives the payload and must be idempotent for its dedupe key: delivery is at least once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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
    batch = _batch.get()
    if batch is not None:
        message = OutboxMessage(kind=kind, payload=payload, dedupe_key=dedupe_key)
        batch.append(message)
        return message
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


_batch: ContextVar[list[OutboxMessage] | None] = ContextVar("outbox_batch", default=None)


@contextmanager
def outbox_batch() -> Iterator[None]:
    """Within the block (inside the transaction that causes the effects), ``outbox_enqueue``
    collects its messages; at the end of the block they are written with one INSERT, a key that
    was used before or twice in the block keeps its first message, and the new ones are delivered
    after commit by one worker task. ``outbox_enqueue`` then returns the message as collected, not
    None for a duplicate key. For the writes of a batch of changes (the billing clock's)."""
    messages: list[OutboxMessage] = []
    token = _batch.set(messages)
    try:
        yield
    finally:
        _batch.reset(token)
    unique = list({message.dedupe_key: message for message in reversed(messages)}.values())
    if not unique:
        return
    OutboxMessage.objects.bulk_create(unique, ignore_conflicts=True)
    keys = [message.dedupe_key for message in unique]
    # Which are ours to schedule: the rows with these keys not delivered yet (an older pending one
    # with the same key is harmless to schedule: delivery takes each message once).
    ids = list(
        OutboxMessage.objects.filter(
            dedupe_key__in=keys, status=OutboxMessage.Status.PENDING
        ).values_list("pk", flat=True)
    )
    if ids:
        transaction.on_commit(lambda: _schedule_many(ids))


def _schedule_many(message_ids: list[int]) -> None:
    from tollgate.core.tasks import outbox_deliver_many_task

    outbox_deliver_many_task(message_ids)


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
