from __future__ import annotations

from django.db import models

from tollgate.audit.models import AuditEvent


def audit_events_for_target(*, target: models.Model, limit: int = 100) -> list[AuditEvent]:
    target_id = str(getattr(target, "public_id", None) or target.pk)
    return list(
        AuditEvent.objects.filter(
            target_type=target._meta.label_lower, target_id=target_id
        ).select_related("actor")[:limit]
    )
