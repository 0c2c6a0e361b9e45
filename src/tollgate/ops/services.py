"""Operator actions on the background machinery (each one transaction, audited)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from tollgate.audit.services import audit_record
from tollgate.core import clock
from tollgate.core.models import OutboxMessage


def outbox_message_retry(*, message: OutboxMessage, actor: Any) -> bool:
    """Give a failed outbox message a fresh round of delivery attempts, due now, audited.

    Only a message that is still ``failed`` (under its row lock) is changed; True when it was.
    Its last error stays until the next attempt replaces it, and the audit event keeps the count of
    attempts it had used up. The worker's minute sweep delivers it.
    """
    with transaction.atomic(durable=True):
        current = OutboxMessage.objects.select_for_update().get(pk=message.pk)
        if current.status != OutboxMessage.Status.FAILED:
            return False
        previous_attempts = current.attempts
        current.status = OutboxMessage.Status.PENDING
        current.attempts = 0
        current.available_at = clock.now()
        current.save(update_fields=["status", "attempts", "available_at"])
        audit_record(
            action="ops.outbox_message_retried",
            actor=actor,
            target=current,
            details={"kind": current.kind, "previous_attempts": previous_attempts},
        )
    return True
