from __future__ import annotations

from django.db import models

from tollgate.core import clock


class OutboxMessage(models.Model):
    """A side effect (email, webhook, cache invalidation) recorded in the transaction that caused it.

    The worker delivers it after commit, at least once; ``dedupe_key`` makes a second enqueue of the same
    effect a no-op, and handlers use it to stay idempotent.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    kind = models.CharField(max_length=64)
    dedupe_key = models.CharField(max_length=200, unique=True)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    available_at = models.DateTimeField(default=clock.now)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=clock.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["available_at"],
                name="outbox_pending_due",
                condition=models.Q(status="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.dedupe_key} ({self.status})"


class IdempotencyRecord(models.Model):
    """One request that moves money or creates billable state, stored under its idempotency key.

    ``(scope, key)`` is unique: ``scope`` is whose key it is (a customer's public id), so clients
    cannot collide with each other. ``fingerprint`` is the SHA-256 of the canonical JSON of the
    operation and its parameters; ``response`` is the JSON of the result: written with the work's
    first committed effect while the request is in progress (a checkpoint) and final once completed.
    ``lease_token`` names the claim that may complete it, so a claim taken over after its lease ran
    out can no longer overwrite the result. Records are kept for the retention period, then purged.
    """

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"
        # The work raised before any effect was committed: the same request may be sent again.
        FAILED = "failed"

    scope = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    operation = models.CharField(max_length=64)
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_PROGRESS)
    response = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    lease_token = models.CharField(max_length=64)
    claimed_at = models.DateTimeField(default=clock.now)
    created_at = models.DateTimeField(default=clock.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotency_scope_key_unique"),
            models.CheckConstraint(
                condition=models.Q(state__in=["in_progress", "completed", "failed"]),
                name="idempotency_state_valid",
            ),
            models.CheckConstraint(
                condition=~models.Q(state="completed")
                | models.Q(response__isnull=False, completed_at__isnull=False),
                name="idempotency_completed_has_response",
            ),
            models.CheckConstraint(
                condition=models.Q(fingerprint__regex=r"^[0-9a-f]{64}$"),
                name="idempotency_fingerprint_sha256",
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return f"{self.scope} {self.operation} {self.key} ({self.state})"
