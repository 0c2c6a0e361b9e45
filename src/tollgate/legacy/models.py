"""What the legacy import wrote, by the old portal's own ids (see ``legacy.importer``)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from tollgate.core import clock


class LegacyRecord(models.Model):
    """One record of the old portal and the Tollgate row it became: the natural key that makes a
    second import of the same record a no-op and lets a crashed import resume where it stopped.

    ``gateway_reference`` keeps the gateway id the old portal stored (the Stripe customer,
    subscription or payment intent). ``invited_at`` (users only) is when the set-password email
    was queued; empty until ``legacy_invite`` sends it.
    """

    class Kind(models.TextChoices):
        USER = "user"
        SUBSCRIPTION = "subscription"
        PAYMENT = "payment"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    legacy_id = models.CharField(max_length=255)
    object_id = models.BigIntegerField(help_text="Primary key of the row it became")
    gateway_reference = models.CharField(max_length=255, blank=True)
    imported_at = models.DateTimeField(default=clock.now, editable=False)
    invited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "legacy_id"], name="legacy_record_once"),
            models.CheckConstraint(
                condition=Q(kind__in=["user", "subscription", "payment"]),
                name="legacy_record_kind_valid",
            ),
            models.CheckConstraint(
                condition=Q(kind="user") | Q(invited_at__isnull=True),
                name="legacy_record_invites_users_only",
            ),
        ]
        indexes = [
            models.Index(
                fields=["object_id"],
                condition=Q(kind="user", invited_at__isnull=True),
                name="legacy_user_not_invited",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.legacy_id}"
