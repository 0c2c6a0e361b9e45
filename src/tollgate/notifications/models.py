from __future__ import annotations

from django.db import models

from tollgate.core import clock


class SuppressedAddress(models.Model):
    """An email address the provider reported as undeliverable (a hard bounce, a hard rejection or
    a spam complaint): billing and other suppressible email is not sent to it while it is active.

    The address itself is not stored: ``address_hash`` (SHA-256 of the lower-cased address) finds
    it, ``address_masked`` shows staff which one it is. Clearing keeps the row (``cleared_at``), so
    the history stays and a provider event delivered again changes nothing.
    """

    class Reason(models.TextChoices):
        BOUNCED = "bounced", "Bounced"
        REJECTED = "rejected", "Rejected by the provider"
        COMPLAINED = "complained", "Marked as spam"

    class ClearedBy(models.TextChoices):
        VERIFIED = "verified", "The owner confirmed the address"
        STAFF = "staff", "Cleared by staff"

    address_hash = models.CharField(max_length=64)
    address_masked = models.CharField(max_length=254)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    esp = models.CharField("provider", max_length=40)
    event_id = models.CharField("provider event id", max_length=200, blank=True)
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.CharField(max_length=16, choices=ClearedBy.choices, blank=True)

    class Meta:
        verbose_name = "undeliverable address"
        verbose_name_plural = "undeliverable addresses"
        constraints = [
            models.UniqueConstraint(
                fields=["address_hash"],
                condition=models.Q(cleared_at__isnull=True),
                name="notifications_suppression_one_active",
            ),
            # One provider event suppresses an address once, however often it is delivered
            # (one event may name several recipients: the address is part of the key).
            models.UniqueConstraint(
                fields=["esp", "event_id", "address_hash"],
                condition=~models.Q(event_id=""),
                name="notifications_suppression_event_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.address_masked} ({self.reason})"
