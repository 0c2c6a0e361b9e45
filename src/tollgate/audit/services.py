from __future__ import annotations

from typing import Any

from django.db import models

from tollgate.audit.models import AuditEvent
from tollgate.core import context
from tollgate.core.redaction import scrub


def _target_id(target: models.Model) -> str:
    return str(getattr(target, "public_id", None) or target.pk)


def audit_details_present(details: dict[str, Any]) -> dict[str, Any]:
    """``details`` without its empty values (``""``, ``None``, empty lists and maps): a payment
    that succeeded has no decline code to record. Zero and false are facts and stay."""
    return {
        name: value
        for name, value in details.items()
        if value is not None and not (isinstance(value, str | list | tuple | dict) and not value)
    }


def audit_record(
    *,
    action: str,
    actor: Any = None,
    target: models.Model | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event, stamped with the current request's IP, user agent and request id.

    Call it inside the transaction of the change it records, so both commit or neither does. Details are
    scrubbed of secrets before they are stored; empty ones are left out.
    """
    event = audit_event_build(action=action, actor=actor, target=target, details=details)
    event.save()
    return event


def audit_event_build(
    *,
    action: str,
    actor: Any = None,
    target: models.Model | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """The event ``audit_record`` appends, not saved yet: for a batch of changes that appends its
    events with one ``AuditEvent.objects.bulk_create`` in its transaction."""
    request = context.current()
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    return AuditEvent(
        action=action,
        actor=actor if authenticated else None,
        actor_repr=(getattr(actor, "public_id", "") or str(actor.pk))
        if authenticated
        else request.api_key,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=_target_id(target) if target is not None else "",
        ip=request.ip or None,
        user_agent=request.user_agent[:512],
        request_id=request.request_id,
        details=scrub(audit_details_present(details or {})),
    )
