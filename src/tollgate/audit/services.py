from __future__ import annotations

from typing import Any

from django.db import models, transaction
from django.db.models import Q

from tollgate.audit.models import ANONYMISED_ACTOR, AuditEvent
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


def audit_access_record(
    *,
    viewer: Any,
    action: str,
    target: models.Model | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record that staff read something about a customer (``staff.viewed_*``): who, what, when.

    One event, chained like every other (advancing its stream's head, then one INSERT); a page that
    only reads needs no transaction of its own.
    """
    return audit_record(action=action, actor=viewer, target=target, details=details)


def audit_actor_anonymise(*, user: Any, actor: Any = None) -> int:
    """Replace ``user`` as the actor of every audit event (by account or by the public id kept in
    ``actor_repr``) with ``ANONYMISED_ACTOR``; returns how many events changed.

    The only change the database allows to an audit event (docs/security.md). The hash chain stays
    valid because it does not cover the actor. Audited (without naming whom).
    """
    with transaction.atomic(durable=True):
        events = AuditEvent.objects.filter(Q(actor=user) | Q(actor_repr=user.public_id))
        # Past the append-only guard of the event queryset, on purpose: this is the one update.
        changed = models.QuerySet.update(events, actor=None, actor_repr=ANONYMISED_ACTOR)
        audit_record(action="audit.actor_anonymised", actor=actor, details={"events": changed})
    return changed
