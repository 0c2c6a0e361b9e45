"""The Stripe gateway's own records: which Stripe object each of Tollgate's idempotency keys made.

A row is written *before* a money-moving request leaves (so "no row" means Stripe never received
it) and completed with the Stripe object's id when the answer arrives. When the answer was lost, the
object is found at Stripe by the key it carries in its metadata. The engine never reads this table.
"""

from __future__ import annotations

from django.db import models

from tollgate.core import clock


class StripeRequest(models.Model):
    class Kind(models.TextChoices):
        PAYMENT_INTENT = "payment_intent"
        REFUND = "refund"

    idempotency_key = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    customer_reference = models.CharField(max_length=255, blank=True)
    # The payment intent a refund belongs to (a lost refund is looked for among its refunds).
    parent_reference = models.CharField(max_length=255, blank=True)
    # The Stripe object the request made, once known: pi_... or re_...
    object_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=clock.now, editable=False)

    class Meta:
        app_label = "billing"
        db_table = "billing_stripe_request"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=["payment_intent", "refund"]),
                name="stripe_request_kind_valid",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.idempotency_key}"
