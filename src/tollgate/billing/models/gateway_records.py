"""What the gateways told us: inbound events and reconciliation runs."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from tollgate.core import clock
from tollgate.core.ids import (
    new_rec_id,
)


class InboundEvent(models.Model):
    """An event a gateway sent us (a webhook), stored once, then processed by the worker.

    The inbox: an event is stored only after its signature was verified, exactly once per
    (gateway, provider event id) (a redelivery is a no-op), and processed later, outside the
    request. Status: ``received`` -> ``processed``, or ``failed`` with the error kept and
    ``next_attempt_at`` set while retries remain (then ``processed`` or ``failed`` again).

    ``locked_until`` is a worker's lease on the event while it processes it: no other worker takes
    the event until the lease runs out, which is also how a worker that died mid-way is replaced.
    """

    class Status(models.TextChoices):
        RECEIVED = "received"
        PROCESSED = "processed"
        FAILED = "failed"

    gateway = models.CharField(max_length=32)
    event_id = models.CharField(max_length=255, help_text="The gateway's own id of the event")
    type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict, help_text="The event's data, as the gateway sent it")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    occurred_at = models.DateTimeField(help_text="When the gateway says the event happened")
    received_at = models.DateTimeField(default=clock.now, editable=False)
    processed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "event_id"], name="inbound_event_once_per_gateway"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["received", "processed", "failed"]),
                name="inbound_event_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(status="processed", processed_at__isnull=False)
                | (~Q(status="processed") & Q(processed_at__isnull=True)),
                name="inbound_event_processed_at_iff_processed",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["received", "failed"], next_attempt_at__isnull=False),
                name="inbound_event_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.gateway} {self.event_id} {self.type}"


class ReconciliationRun(models.Model):
    """One comparison of Tollgate's payments, refunds and ledger postings with a gateway's own list
    of transactions for a time window, and what it found (see ``billing.reconciliation``).

    A run is written when it starts (``running``) and completed with its counts and details:
    ``heals`` are records Tollgate was missing an outcome for, settled from the gateway's data
    through the billing services; ``mismatches`` are disagreements (amount, currency, status,
    reference, a record on one side only, a missing ledger posting) reported for staff and never
    overwritten; ``unresolved`` are records neither side can settle yet (a request the gateway has
    not received, which the billing clock sends again under its key). A run that could not finish
    (the gateway's list was unavailable) is ``failed`` with the error kept.
    """

    class Status(models.TextChoices):
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    public_id = models.CharField(max_length=32, unique=True, default=new_rec_id, editable=False)
    gateway = models.CharField(max_length=32)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    checked_count = models.PositiveIntegerField(default=0)
    healed_count = models.PositiveIntegerField(default=0)
    mismatched_count = models.PositiveIntegerField(default=0)
    unresolved_count = models.PositiveIntegerField(default=0)
    heals = models.JSONField(default=list, blank=True)
    mismatches = models.JSONField(default=list, blank=True)
    unresolved = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who ran it by hand; empty for the daily run",
    )
    started_at = models.DateTimeField(default=clock.now, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(window_end__gt=F("window_start")),
                name="reconciliation_window_ordered",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["running", "completed", "failed"]),
                name="reconciliation_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(status="running", finished_at__isnull=True)
                | (~Q(status="running") & Q(finished_at__isnull=False)),
                name="reconciliation_finished_at_iff_finished",
            ),
        ]
        indexes = [models.Index(fields=["started_at"], name="reconciliation_started")]

    def __str__(self) -> str:
        return self.public_id
