"""Payment attempts and refunds."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from tollgate.billing.models.common import currency_check
from tollgate.billing.models.customers import PaymentMethod
from tollgate.billing.models.invoices import Invoice
from tollgate.billing.states import (
    PAYMENT_LIVE,
    PaymentStatus,
    RefundStatus,
)
from tollgate.core import clock
from tollgate.core.ids import (
    new_pay_id,
    new_ref_id,
)


class PaymentAttempt(models.Model):
    """One try at collecting an invoice through the gateway.

    ``idempotency_key`` is derived from (invoice, attempt number), so a retry of the same attempt
    after a crash can never charge twice. While an attempt is live (pending, requires_action, unknown
    or succeeded) no other attempt may start for the invoice: a partial unique index says so.
    """

    class DeclineKind(models.TextChoices):
        HARD = "hard"
        SOFT = "soft"

    public_id = models.CharField(max_length=32, unique=True, default=new_pay_id, editable=False)
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    attempt_number = models.PositiveIntegerField()
    idempotency_key = models.CharField(max_length=100, unique=True)
    status = models.CharField(
        max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    amount_refunded = models.BigIntegerField(default=0)
    payment_method = models.ForeignKey(
        PaymentMethod, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    gateway = models.CharField(max_length=32)
    off_session = models.BooleanField()
    gateway_reference = models.CharField(max_length=255, blank=True)
    decline_code = models.CharField(max_length=64, blank=True)
    decline_kind = models.CharField(max_length=8, choices=DeclineKind.choices, blank=True)
    action_url = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=clock.now, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            currency_check("payment"),
            models.CheckConstraint(
                condition=Q(status__in=PaymentStatus.values), name="payment_status_valid"
            ),
            models.UniqueConstraint(
                fields=["invoice", "attempt_number"], name="payment_attempt_number_unique"
            ),
            models.UniqueConstraint(
                fields=["invoice"],
                condition=Q(status__in=sorted(PAYMENT_LIVE)),
                name="payment_one_live_per_invoice",
            ),
            models.CheckConstraint(
                condition=Q(attempt_number__gte=1), name="payment_attempt_from_1"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0, amount_refunded__lte=F("amount")),
                name="payment_refunds_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(amount_refunded=0) | Q(status=PaymentStatus.SUCCEEDED),
                name="payment_refunds_only_when_captured",
            ),
            models.CheckConstraint(
                condition=~Q(status=PaymentStatus.FAILED) | ~Q(decline_code=""),
                name="payment_failed_has_decline_code",
            ),
        ]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(status__in=[PaymentStatus.PENDING, PaymentStatus.UNKNOWN]),
                name="payment_unsettled",
            ),
            # The billing clock expires attempts left waiting for authentication.
            models.Index(
                fields=["created_at"],
                condition=Q(status=PaymentStatus.REQUIRES_ACTION),
                name="payment_awaiting_action",
            ),
            # Reconciliation: the attempts of its window, and those still waiting from before it.
            models.Index(fields=["created_at"], name="payment_created"),
            models.Index(
                fields=["created_at"],
                condition=Q(
                    status__in=[
                        PaymentStatus.PENDING,
                        PaymentStatus.REQUIRES_ACTION,
                        PaymentStatus.UNKNOWN,
                    ]
                ),
                name="payment_awaiting",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id


class Refund(models.Model):
    """Money given back from a captured payment, by staff, with a reason.

    The amount is reserved on the payment (``PaymentAttempt.amount_refunded``) before the gateway is
    asked, under the payment's row lock and a check constraint, and released if the gateway fails it.
    """

    class Reason(models.TextChoices):
        DUPLICATE = "duplicate"
        FRAUDULENT = "fraudulent"
        REQUESTED_BY_CUSTOMER = "requested_by_customer"
        OTHER = "other"

    public_id = models.CharField(max_length=32, unique=True, default=new_ref_id, editable=False)
    payment = models.ForeignKey(PaymentAttempt, on_delete=models.PROTECT, related_name="refunds")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=16, choices=RefundStatus.choices, default=RefundStatus.PENDING
    )
    reason = models.CharField(max_length=24, choices=Reason.choices)
    note = models.TextField()
    idempotency_key = models.CharField(max_length=200, unique=True)
    request_fingerprint = models.CharField(max_length=64)
    gateway_reference = models.CharField(max_length=255, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=clock.now, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            currency_check("refund"),
            models.CheckConstraint(
                condition=Q(status__in=RefundStatus.values), name="refund_status_valid"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(condition=~Q(note=""), name="refund_has_note"),
        ]

    def __str__(self) -> str:
        return self.public_id
