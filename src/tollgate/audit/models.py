from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NoReturn

import pgtrigger
from django.conf import settings
from django.db import models, router

from tollgate.audit import chain
from tollgate.core import clock
from tollgate.core.ids import new_evt_id

# What the anonymisation writes in place of the actor (the only change the triggers allow).
ANONYMISED_ACTOR = "anonymised"


class AppendOnlyError(RuntimeError):
    """Raised on any attempt to change or remove an audit event."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit events cannot be updated")

    def delete(self) -> NoReturn:
        raise AppendOnlyError("audit events cannot be deleted")

    def bulk_create(
        self, objs: Iterable[AuditEvent], *args: Any, **kwargs: Any
    ) -> list[AuditEvent]:
        """Chains the batch into one stream first (see :mod:`tollgate.audit.chain`)."""
        events = list(objs)
        self._for_write = True
        using = self.db
        with chain.atomic_unless_in_transaction(using):
            chain.events_chain(events, using=using)
            return super().bulk_create(events, *args, **kwargs)


class AuditStream(models.Model):
    """The head of one hash chain of audit events: its last sequence number and hash.

    Appending to a stream locks its head until the transaction ends; writers of other streams do
    not wait (see :mod:`tollgate.audit.chain`).
    """

    number = models.PositiveSmallIntegerField(primary_key=True)
    seq = models.BigIntegerField(default=0)
    head_hash = models.CharField(max_length=64, default=chain.GENESIS)

    def __str__(self) -> str:
        return f"audit stream {self.number} at {self.seq}"


class AuditEvent(models.Model):
    """One thing that happened, who did it and from where. Append-only."""

    public_id = models.CharField(max_length=32, unique=True, default=new_evt_id, editable=False)
    created_at = models.DateTimeField(default=clock.now, editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Kept so the trail still names who acted after an account is removed.
    actor_repr = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    # The event's place in its hash chain, set when it is saved (tollgate.audit.chain).
    stream = models.PositiveSmallIntegerField(editable=False)
    seq = models.BigIntegerField(editable=False)
    chain_hash = models.CharField(max_length=64, blank=True, editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["target_type", "target_id", "created_at"], name="audit_target"),
            models.Index(fields=["actor", "created_at"], name="audit_actor"),
            models.Index(fields=["action", "created_at"], name="audit_action"),
            models.Index(fields=["created_at"], name="audit_created"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["stream", "seq"], name="audit_stream_seq"),
        ]
        # PostgreSQL refuses any change to an event but the anonymisation of its actor (actor set
        # to NULL, actor_repr to ANONYMISED_ACTOR), and any removal. TRUNCATE is not refused.
        triggers = [
            pgtrigger.Protect(
                name="audit_event_no_delete", operation=pgtrigger.Delete, when=pgtrigger.Before
            ),
            pgtrigger.Protect(
                name="audit_event_no_update",
                operation=pgtrigger.Update,
                when=pgtrigger.Before,
                condition=pgtrigger.AnyChange(exclude=["actor", "actor_repr"]),
            ),
            pgtrigger.Protect(
                name="audit_event_actor_only_anonymised",
                operation=pgtrigger.Update,
                when=pgtrigger.Before,
                condition=(
                    pgtrigger.Q(new__actor__isnull=False)
                    & pgtrigger.Q(old__actor__df=pgtrigger.F("new__actor"))
                )
                | (
                    pgtrigger.Q(old__actor_repr__df=pgtrigger.F("new__actor_repr"))
                    & ~pgtrigger.Q(new__actor_repr=ANONYMISED_ACTOR)
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} by {self.actor_repr or 'system'}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("audit events cannot be updated")
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with chain.atomic_unless_in_transaction(using):
            chain.event_chain(self, using=using)
            super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit events cannot be deleted")
