"""Disputes (chargebacks) against captured payments."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from tollgate.billing.models.common import currency_check
from tollgate.billing.models.payments import PaymentAttempt
from tollgate.core import clock
from tollgate.core.ids import (
    new_public_id,
)


def new_dsp_id() -> str:
    return new_public_id("dsp")


class Dispute(models.Model):
    """A chargeback the customer's bank opened against a captured payment, as the gateway reports it.

    Recorded from the gateway's events (``billing.disputes``), once per gateway dispute; its status
    only moves forward (a late "created" never reopens a closed dispute). ``needs_attention`` flags
    it to staff until someone has looked at it: evidence is submitted on the gateway's dashboard.
    """

    class Status(models.TextChoices):
        WARNING_NEEDS_RESPONSE = "warning_needs_response"
        WARNING_UNDER_REVIEW = "warning_under_review"
        WARNING_CLOSED = "warning_closed"
        NEEDS_RESPONSE = "needs_response"
        UNDER_REVIEW = "under_review"
        WON = "won"
        LOST = "lost"

    public_id = models.CharField(max_length=32, unique=True, default=new_dsp_id, editable=False)
    gateway = models.CharField(max_length=32)
    gateway_reference = models.CharField(max_length=255)
    payment = models.ForeignKey(
        PaymentAttempt, on_delete=models.PROTECT, null=True, blank=True, related_name="disputes"
    )
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=32, choices=Status.choices)
    evidence_due_by = models.DateTimeField(null=True, blank=True)
    needs_attention = models.BooleanField(default=True)
    opened_at = models.DateTimeField(default=clock.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            currency_check("dispute"),
            models.UniqueConstraint(
                fields=["gateway", "gateway_reference"], name="dispute_once_per_gateway"
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="dispute_amount_not_negative"),
        ]

    def __str__(self) -> str:
        return self.public_id
