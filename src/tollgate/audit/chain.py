"""The audit trail's hash chains: what each event's hash covers, which stream it joins, and how it is
appended without making all writers wait on one another.

Events are spread over ``STREAMS`` independent chains (streams), chosen by a hash of the event's
target, so writers of different targets rarely touch the same stream. Each stream has a head row
(:class:`~tollgate.audit.models.AuditStream`) holding its last sequence number and hash; appending
advances the head with one ``UPDATE ... RETURNING`` (which takes the head's row lock until the
transaction ends, so appends to one stream are ordered) and then inserts the event. Every event of
one transaction joins the stream of the transaction's first event: a transaction holds at most one
head lock, so two transactions can never deadlock on heads. Services record their event after
taking their own row locks (customer -> subscription -> invoice -> payment), so the head is the last
lock a transaction takes and is held only for what is left of it.

An event's hash::

    content    = sha256(canonical JSON of public_id, created_at, action, target_type, target_id,
                        ip, user_agent, request_id, details)
    chain_hash = sha256(previous chain_hash of the stream + content)      (hex strings; the first
                                                                           previous is GENESIS)

``actor`` and ``actor_repr`` are left out on purpose: they are the only fields the documented
anonymisation (``audit_actor_anonymise``) may change, and the database triggers allow no other
change to them (docs/security.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction

if TYPE_CHECKING:
    from tollgate.audit.models import AuditEvent

STREAMS = 64
GENESIS = "0" * 64
SQLITE_SHA256 = "tollgate_sha256"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _ip(value: str | None) -> str:
    if not value:
        return ""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return str(value)


def _utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _plain(value: Any) -> Any:
    # PostgreSQL's jsonb gives 1e16 back as 10000000000000000: a whole float is written as an int.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8; after a JSON round trip (tuples and non-string keys read as
    they will from the database) and with whole floats as ints (as jsonb may return them)."""
    plain = _plain(json.loads(json.dumps(value)))
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_digest(event: Any) -> str:
    """The hash of an event's immutable fields (not its actor, not its place in the chain)."""
    return sha256_hex(
        canonical_json(
            {
                "public_id": event.public_id,
                "created_at": _utc(event.created_at),
                "action": event.action,
                "target_type": event.target_type,
                "target_id": event.target_id,
                "ip": _ip(event.ip),
                "user_agent": event.user_agent,
                "request_id": event.request_id,
                "details": event.details,
            }
        )
    )


def link(previous: str, content: str) -> str:
    return sha256_hex(previous + content)


def stream_for(event: Any) -> int:
    """The stream an event joins when nothing else decides: by its target, so the events of one
    target stay in one chain; an event without a target goes by its own (random) id."""
    key = f"{event.target_type}:{event.target_id}" if event.target_type else event.public_id
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:4], "big") % STREAMS


def _transaction_stream(using: str, event: Any) -> int:
    """The stream of the current transaction's first event (pinned), else the event's own."""
    connection = connections[using]
    if not connection.in_atomic_block:
        return stream_for(event)
    # Django starts a new ``run_on_commit`` list at every commit and rollback, so the list object
    # names the transaction; the pin is only an optimisation (any stream is correct).
    pinned = getattr(connection, "_tollgate_audit_stream", None)
    if pinned is not None and pinned[0] is connection.run_on_commit:
        return int(pinned[1])
    stream = stream_for(event)
    connection._tollgate_audit_stream = (connection.run_on_commit, stream)  # type: ignore[attr-defined]
    return stream


def _advance(using: str, stream: int, *, count: int, content: str | None) -> tuple[int, str]:
    """Advance a stream's head in one statement (which locks it until the transaction ends):
    by one event whose hash the database computes from ``content``, or by ``count`` events whose
    hashes the caller computes (the head's hash is left for :func:`_head_set`). Returns the new
    sequence number and the head's hash."""
    from tollgate.audit.models import AuditStream

    connection = connections[using]
    table = connection.ops.quote_name(AuditStream._meta.db_table)
    params: list[int | str]
    if content is None:
        assignment, params = "seq = seq + %s", [count, stream]
    elif connection.vendor == "postgresql":
        assignment = (
            "seq = seq + 1, head_hash = encode(sha256(convert_to(head_hash || %s, 'UTF8')), 'hex')"
        )
        params = [content, stream]
    else:
        assignment = f"seq = seq + 1, head_hash = {SQLITE_SHA256}(head_hash || %s)"
        params = [content, stream]
    sql = f"UPDATE {table} SET {assignment} WHERE number = %s RETURNING seq, head_hash"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
        if row is None:  # a stream no migration created (STREAMS was raised): create its head
            AuditStream.objects.using(using).bulk_create(
                [AuditStream(number=stream)], ignore_conflicts=True
            )
            cursor.execute(sql, params)
            row = cursor.fetchone()
    return int(row[0]), str(row[1])


def event_chain(event: AuditEvent, *, using: str) -> None:
    """Give an unsaved event its stream, sequence number and chain hash, advancing the stream's
    head. Must run in the transaction that inserts the event (the model's ``save``)."""
    stream = _transaction_stream(using, event)
    seq, chain_hash = _advance(using, stream, count=1, content=content_digest(event))
    event.stream, event.seq, event.chain_hash = stream, seq, chain_hash


def events_chain(events: Sequence[AuditEvent], *, using: str) -> None:
    """Chain a batch of unsaved events into one stream (for ``bulk_create``): the head advances by
    the batch's size, the hashes are computed here, then the head takes the last one."""
    from tollgate.audit.models import AuditStream

    if not events:
        return
    stream = _transaction_stream(using, events[0])
    last_seq, previous = _advance(using, stream, count=len(events), content=None)
    seq = last_seq - len(events)
    for event in events:
        seq += 1
        previous = link(previous, content_digest(event))
        event.stream, event.seq, event.chain_hash = stream, seq, previous
    AuditStream.objects.using(using).filter(number=stream).update(head_hash=previous)


def atomic_unless_in_transaction(using: str) -> AbstractContextManager[Any]:
    """An atomic block when none is open (the head and the event must commit together), else
    nothing: no savepoint for every event of a transaction."""
    if connections[using].in_atomic_block:
        return nullcontext()
    return transaction.atomic(using=using)
