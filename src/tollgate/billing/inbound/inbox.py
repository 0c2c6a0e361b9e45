"""The inbox of inbound gateway events (webhooks): verify, store once, process in the worker.

Intake (:func:`event_receive`), used by the webhook endpoint and by the sandbox's hosted pages:

1. the gateway's adapter verifies the signature over the raw body and parses the event
   (``Gateway.event_parse``; Stripe's scheme is in ``gateways/signatures.py``). A rejected event
   raises ``EventRejected`` and nothing is stored;
2. the event is stored under a unique constraint on (gateway, provider event id): a redelivery,
   even several at the same instant, finds the stored row and changes nothing. Deliveries that
   arrive together are stored together (one INSERT: ``core.group_commit``);
3. after commit the worker is asked to process them (one task per stored batch). Nothing else
   happens in the request, so the sender gets its 2xx fast.

Processing (:func:`event_process`, and :func:`events_sweep` every minute as the safety net): a
worker takes a lease on the event (``locked_until``), runs its handler (registered by its gateway, ``inbound.handlers``)
outside any transaction (handlers call the services, each one transaction) and records
``processed``, or ``failed`` with the error kept and the next attempt scheduled (backoff as the
outbox's, at most ``MAX_ATTEMPTS`` attempts). A worker that dies mid-way leaves the lease to run
out and the sweep takes the event again; handlers are idempotent, so that is safe. A type without a
handler is stored and acknowledged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import structlog
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.db.models.constants import OnConflict

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing.errors import EventNotReady, IntakeBusy
from tollgate.billing.gateways.base import GatewayEvent
from tollgate.billing.gateways.registry import gateway_get
from tollgate.billing.inbound.handlers import handler_for
from tollgate.billing.models import InboundEvent
from tollgate.core import clock
from tollgate.core.errors import Conflict, PermissionDenied
from tollgate.core.group_commit import GroupCommit, GroupCommitBusy
from tollgate.core.outbox import retry_delay

log = structlog.get_logger(__name__)

# The HTTP header each gateway sends its signature in.
# About five hours of retries with the outbox's backoff (30 s doubling up to an hour).
MAX_ATTEMPTS = 12
# How long a worker may take over one event before another may assume it died.
LEASE = dt.timedelta(minutes=5)
# The sweep leaves a fresh event this long to the task scheduled when it was stored.
SWEEP_AFTER = dt.timedelta(seconds=30)
BATCH_SIZE = 100
MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True, slots=True)
class EventReceipt:
    gateway: str
    event_id: str  # the gateway's own id of the event
    # False when the event had been stored before (a redelivery): nothing was changed.
    created: bool

    @property
    def event(self) -> InboundEvent:
        """The stored event (one query)."""
        return InboundEvent.objects.get(gateway=self.gateway, event_id=self.event_id)


def event_receive(*, gateway: str, payload: bytes, signature: str) -> EventReceipt:
    """Verify and store an inbound event once; its processing is left to the worker.

    Raises ``EventRejected`` (nothing stored) when the signature, its age or the body is not
    acceptable to the gateway's adapter, and ``IntakeBusy`` when the database did not take the
    event in time (the sender retries; a redelivery is harmless). Storing the same event again
    returns ``created=False`` and changes nothing.

    Concurrent deliveries to one process are stored together (``core.group_commit``): one
    INSERT for the batch, one task queued for its new events, one line logged. Inside a caller's
    transaction (the sandbox's hosted pages, tests) the event is stored alone in that transaction
    and its task is queued after the commit.
    """
    parsed = gateway_get(gateway).event_parse(payload=payload, signature=signature)
    if transaction.get_connection().in_atomic_block:
        # Never a batch with other deliveries: theirs would commit, or roll back, with this
        # caller's transaction.
        receipts = _events_store([(gateway, parsed)])
        _events_stored(receipts)
        return receipts[0]
    try:
        return _intake.submit((gateway, parsed))
    except GroupCommitBusy as exc:
        raise IntakeBusy() from exc


def _events_store(batch: Sequence[tuple[str, GatewayEvent]]) -> list[EventReceipt]:
    """Store a batch of verified events (any gateways), each once, in one statement."""
    now = clock.now()
    fresh: dict[tuple[str, str], InboundEvent] = {}
    for gateway, parsed in batch:
        fresh.setdefault(
            (gateway, parsed.id),
            InboundEvent(
                gateway=gateway,
                event_id=parsed.id,
                type=parsed.type,
                payload=dict(parsed.data),
                occurred_at=parsed.created_at,
                received_at=now,
                next_attempt_at=now + SWEEP_AFTER,
            ),
        )
    # INSERT .. ON CONFLICT DO NOTHING RETURNING: the statement bulk_create(ignore_conflicts=True)
    # sends, made by the same ORM call, but in one round trip without bulk_create's transaction
    # and with the rows it actually inserted returned, so redeliveries are told apart without a
    # SELECT. A lone event that was stored before comes back as one empty row.
    rows = InboundEvent.objects._insert(  # type: ignore[attr-defined]  # not in the stubs
        list(fresh.values()),
        fields=_INSERT_FIELDS,
        returning_fields=_INSERT_RETURNING,
        on_conflict=OnConflict.IGNORE,
    )
    inserted = {(row[0], row[1]) for row in rows if row}
    receipts: list[EventReceipt] = []
    for gateway, parsed in batch:
        created = (gateway, parsed.id) in inserted
        inserted.discard((gateway, parsed.id))  # a second copy in the same batch is a duplicate
        receipts.append(EventReceipt(gateway=gateway, event_id=parsed.id, created=created))
    return receipts


def _events_stored(receipts: Sequence[EventReceipt]) -> None:
    """After a batch is stored: one processing task per gateway (after commit) and one line."""
    new: dict[str, list[str]] = {}
    for receipt in receipts:
        if receipt.created:
            new.setdefault(receipt.gateway, []).append(receipt.event_id)
    for gateway, event_ids in new.items():
        transaction.on_commit(partial(_schedule, gateway, event_ids))
    log.info(
        "inbox.stored",
        stored=sum(len(ids) for ids in new.values()),
        # Redeliveries are rare and worth naming; new events are found in the inbox by time.
        duplicates=[receipt.event_id for receipt in receipts if not receipt.created],
    )


_INSERT_FIELDS = [field for field in InboundEvent._meta.concrete_fields if not field.primary_key]
_INSERT_RETURNING = [
    InboundEvent._meta.get_field("gateway"),
    InboundEvent._meta.get_field("event_id"),
]


# Deliveries to this process are stored in batches of at most 100; one that waits 10 s is refused
# with a 503 (the sender retries).
_intake: GroupCommit[tuple[str, GatewayEvent], EventReceipt] = GroupCommit(
    _events_store, after_write=_events_stored, max_batch=100, timeout=10
)


# The worker task that processes stored events. The billing app registers it when it starts
# (``billing/tasks.py`` defines it on top of this module, so this module never imports it); until
# then, stored events wait for the sweep.
_process_tasks: list[Callable[[str, list[str]], object]] = []


def process_task_register(task: Callable[[str, list[str]], object]) -> None:
    """Name the task that processes a gateway's stored events in the worker (``AppConfig.ready``)."""
    _process_tasks[:] = [task]


def _schedule(gateway: str, event_ids: list[str]) -> None:
    try:
        for task in _process_tasks:
            task(gateway, event_ids)
    except Exception:
        # The events are stored; the sweep processes them if the queue cannot be reached now.
        log.warning("inbox.schedule_failed", gateway=gateway, events=len(event_ids), exc_info=True)


def events_process(*, gateway: str, event_ids: Sequence[str]) -> int:
    """Process the given events that are waiting, in the order they were stored; how many were
    processed now (see :func:`event_process`)."""
    pks = (
        InboundEvent.objects.filter(gateway=gateway, event_id__in=list(event_ids))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return sum(event_process(event_id=pk) for pk in list(pks))


def event_process(*, event_id: int) -> bool:
    """Process one stored event if it is waiting (new, or failed and due for a retry) and no
    other worker holds it. True when it was processed now (handled or acknowledged)."""
    event = _claim(event_id, now=clock.now())
    if event is None:
        return False
    handler = handler_for(gateway=event.gateway, event_type=event.type)
    try:
        if handler is None:
            log.info(
                "inbox.event_unhandled",
                gateway=event.gateway,
                event_id=event.event_id,
                event_type=event.type,
            )
        else:
            handler(event)
    except Exception as exc:
        _record_failure(event, exc)
        return False
    _release(event).update(
        status=InboundEvent.Status.PROCESSED,
        processed_at=clock.now(),
        last_error="",
        next_attempt_at=None,
        locked_until=None,
    )
    log.info(
        "inbox.processed",
        gateway=event.gateway,
        event_id=event.event_id,
        event_type=event.type,
        attempts=event.attempts,
    )
    return True


def _claim(event_id: int, *, now: dt.datetime) -> InboundEvent | None:
    """Take the lease on the event if it is waiting and free; one conditional UPDATE, so two
    workers can never both take it."""
    waiting = Q(status=InboundEvent.Status.RECEIVED) | Q(
        status=InboundEvent.Status.FAILED, next_attempt_at__lte=now
    )
    free = Q(locked_until__isnull=True) | Q(locked_until__lte=now)
    taken = (
        InboundEvent.objects.filter(waiting & free, pk=event_id).update(
            locked_until=now + LEASE, attempts=F("attempts") + 1
        )
        == 1
    )
    return InboundEvent.objects.get(pk=event_id) if taken else None


def _release(event: InboundEvent) -> QuerySet[InboundEvent]:
    # Only the holder of this attempt's lease writes the outcome: if the lease ran out and another
    # worker took the event, its attempt count moved on and this update changes nothing.
    return InboundEvent.objects.filter(pk=event.pk, attempts=event.attempts)


def _record_failure(event: InboundEvent, exc: Exception) -> None:
    retry = event.attempts < MAX_ATTEMPTS
    _release(event).update(
        status=InboundEvent.Status.FAILED,
        last_error=f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH],
        next_attempt_at=clock.now() + retry_delay(event.attempts) if retry else None,
        locked_until=None,
    )
    log.warning(
        "inbox.event_failed",
        gateway=event.gateway,
        event_id=event.event_id,
        event_type=event.type,
        attempts=event.attempts,
        will_retry=retry,
        error=type(exc).__name__,
        exc_info=not isinstance(exc, EventNotReady),
    )


def events_sweep(*, batch_size: int = BATCH_SIZE) -> int:
    """Process every event that is due: new ones the scheduled task has not taken (a lost
    schedule, a worker that died holding one) and failed ones whose retry is due. One pass in id
    order; returns how many were processed."""
    processed = 0
    last_pk = 0
    while True:
        now = clock.now()
        due = list(
            InboundEvent.objects.filter(
                Q(locked_until__isnull=True) | Q(locked_until__lte=now),
                status__in=[InboundEvent.Status.RECEIVED, InboundEvent.Status.FAILED],
                next_attempt_at__lte=now,
                pk__gt=last_pk,
            )
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not due:
            return processed
        for pk in due:
            processed += event_process(event_id=pk)
        last_pk = due[-1]


def event_retry(*, event: InboundEvent, actor: User) -> InboundEvent:
    """Staff ask for a failed event to be processed again now, whether or not its retries were
    exhausted: it becomes due at once and the worker is asked to process it after commit (the
    normal path: lease, handler, ``processed`` or ``failed`` with the error kept). Audited.

    Only a ``failed`` event that no worker holds can be retried (``Conflict`` otherwise); a retry
    changes nothing else, and handlers are idempotent, so asking twice is harmless.
    """
    if not actor.is_staff:
        raise PermissionDenied("Only staff can retry inbound events.")
    now = clock.now()
    with transaction.atomic(durable=True):
        current = InboundEvent.objects.select_for_update().get(pk=event.pk)
        if current.status != InboundEvent.Status.FAILED:
            raise Conflict(
                f"Only a failed event can be retried; this one is {current.status}.",
                details={"event": current.event_id, "status": current.status},
            )
        if current.locked_until is not None and current.locked_until > now:
            raise Conflict(
                "A worker is processing this event right now; reload in a minute.",
                details={"event": current.event_id},
            )
        current.next_attempt_at = now
        current.save(update_fields=["next_attempt_at"])
        audit_record(
            action="billing.inbound_event_retried",
            actor=actor,
            target=current,
            details={
                "gateway": current.gateway,
                "event_id": current.event_id,
                "type": current.type,
                "attempts": current.attempts,
            },
        )
        transaction.on_commit(partial(_schedule, current.gateway, [current.event_id]))
    return current
