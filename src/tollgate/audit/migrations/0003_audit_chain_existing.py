"""Chains the events written before the hash chain existed, oldest first, in batches."""

from typing import Any

from django.db import migrations

from tollgate.audit import chain

BATCH = 2000


def chain_existing(apps: Any, schema_editor: Any) -> None:
    AuditEvent = apps.get_model("audit", "AuditEvent")
    AuditStream = apps.get_model("audit", "AuditStream")
    using = schema_editor.connection.alias
    heads = {number: [0, chain.GENESIS] for number in range(chain.STREAMS)}
    events = AuditEvent.objects.using(using).order_by("created_at", "id")
    last: tuple[Any, int] | None = None
    while True:
        page = events
        if last is not None:
            created_at, pk = last
            page = page.filter(created_at__gt=created_at) | events.filter(
                created_at=created_at, id__gt=pk
            )
        batch = list(page.order_by("created_at", "id")[:BATCH])
        if not batch:
            break
        for event in batch:
            head = heads[chain.stream_for(event)]
            head[0] += 1
            head[1] = chain.link(head[1], chain.content_digest(event))
            event.stream, event.seq, event.chain_hash = chain.stream_for(event), head[0], head[1]
        AuditEvent.objects.using(using).bulk_update(batch, ["stream", "seq", "chain_hash"])
        last = (batch[-1].created_at, batch[-1].id)
    AuditStream.objects.using(using).bulk_create(
        [AuditStream(number=n, seq=seq, head_hash=hash_) for n, (seq, hash_) in heads.items()]
    )


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_audit_chain")]

    operations = [migrations.RunPython(chain_existing, migrations.RunPython.noop, elidable=True)]
