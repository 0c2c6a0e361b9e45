"""Invoices, their gap-free numbering and their lines."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import F, Q

from tollgate.billing.errors import InvoiceImmutable
from tollgate.billing.models.common import currency_check
from tollgate.billing.models.customers import Customer
from tollgate.billing.models.subscriptions import Subscription
from tollgate.billing.states import (
    InvoiceStatus,
)
from tollgate.catalog.models import Price
from tollgate.core import clock
from tollgate.core.ids import (
    new_inv_id,
)


class Invoice(models.Model):
    """What a customer owes. Drafts are edited freely; finalizing numbers it, and from then on its
    amounts, lines and number never change (``save`` refuses, and lines refuse to be written).

    ``total`` always equals the sum of its lines' amounts; the services keep it so and check it at
    finalization. Only ``status`` and the settlement fields change after that.
    """

    class BillingReason(models.TextChoices):
        SUBSCRIPTION_CREATE = "subscription_create"
        SUBSCRIPTION_CYCLE = "subscription_cycle"
        SUBSCRIPTION_UPDATE = "subscription_update"
        MANUAL = "manual"

    # Fixed at finalization; a finalized invoice refuses to save a change to any of them.
    FROZEN_FIELDS = (
        "customer_id",
        "subscription_id",
        "billing_reason",
        "number",
        "currency",
        "total",
        "period_start",
        "period_end",
        "finalized_at",
    )

    public_id = models.CharField(max_length=32, unique=True, default=new_inv_id, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="invoices")
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, null=True, blank=True, related_name="invoices"
    )
    billing_reason = models.CharField(max_length=24, choices=BillingReason.choices)
    number = models.CharField(max_length=32, null=True, blank=True, unique=True)
    status = models.CharField(
        max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT
    )
    currency = models.CharField(max_length=3)
    total = models.BigIntegerField(default=0)
    amount_paid = models.BigIntegerField(default=0)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now, editable=False)
    finalized_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    # When the billing clock next charges this open invoice off session (after a renewal, or a
    # retry of the dunning schedule); empty when nothing is scheduled.
    next_payment_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            currency_check("invoice"),
            models.CheckConstraint(
                condition=Q(status__in=InvoiceStatus.values), name="invoice_status_valid"
            ),
            models.CheckConstraint(condition=Q(total__gte=0), name="invoice_total_not_negative"),
            models.CheckConstraint(
                condition=Q(amount_paid__gte=0, amount_paid__lte=F("total")),
                name="invoice_amount_paid_within_total",
            ),
            models.CheckConstraint(
                condition=(
                    Q(status=InvoiceStatus.DRAFT, number__isnull=True, finalized_at__isnull=True)
                    | (
                        ~Q(status=InvoiceStatus.DRAFT)
                        & Q(number__isnull=False, finalized_at__isnull=False)
                    )
                ),
                name="invoice_numbered_iff_finalized",
            ),
            models.CheckConstraint(
                condition=~Q(status=InvoiceStatus.PAID)
                | Q(amount_paid=F("total"), paid_at__isnull=False),
                name="invoice_paid_in_full",
            ),
            models.CheckConstraint(
                condition=Q(period_start__isnull=True, period_end__isnull=True)
                | Q(period_end__gt=F("period_start")),
                name="invoice_period_ordered",
            ),
            # The billing clock may run in many workers: one invoice per subscription period.
            models.UniqueConstraint(
                fields=["subscription", "period_start"],
                condition=Q(
                    billing_reason__in=["subscription_create", "subscription_cycle"],
                    subscription__isnull=False,
                )
                & ~Q(status=InvoiceStatus.VOID),
                name="invoice_one_per_subscription_period",
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "created_at"], name="invoice_customer"),
            models.Index(
                fields=["next_payment_attempt_at"],
                condition=Q(status="open", next_payment_attempt_at__isnull=False),
                name="invoice_payment_due",
            ),
            # The API's list of every customer's invoices, newest first.
            models.Index(fields=["created_at", "id"], name="invoice_created"),
        ]

    def __str__(self) -> str:
        return self.number or self.public_id

    def save(self, *args: Any, **kwargs: Any) -> None:
        saved = getattr(self, "_saved_state", None)
        if saved is not None and saved["status"] != InvoiceStatus.DRAFT:
            changed = [name for name in self.FROZEN_FIELDS if getattr(self, name) != saved[name]]
            if changed:
                raise InvoiceImmutable(details={"invoice": self.public_id, "fields": changed})
        super().save(*args, **kwargs)
        self._remember_saved_state()

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if self.status != InvoiceStatus.DRAFT:
            raise InvoiceImmutable(details={"invoice": self.public_id})
        return super().delete(*args, **kwargs)

    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any) -> Invoice:
        instance = super().from_db(db, field_names, values)
        instance._remember_saved_state()
        return instance

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        super().refresh_from_db(*args, **kwargs)
        self._remember_saved_state()

    def _remember_saved_state(self) -> None:
        loaded = self.__dict__
        if all(name in loaded for name in (*self.FROZEN_FIELDS, "status")):
            self._saved_state = {name: loaded[name] for name in (*self.FROZEN_FIELDS, "status")}


class InvoiceNumberSequence(models.Model):
    """The installation-wide invoice counter, used only when numbering is set to "account".

    Taken under its row lock at finalization, so that setting serializes every finalization.
    """

    name = models.CharField(max_length=32, unique=True)
    next_value = models.PositiveBigIntegerField(default=1)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(next_value__gte=1), name="invoice_number_sequence_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}: {self.next_value}"


class InvoiceLine(models.Model):
    """One line of an invoice. Charges are positive, credits and discounts negative."""

    class Kind(models.TextChoices):
        PLAN_CHARGE = "plan_charge"
        PRORATION_DEBIT = "proration_debit"
        PRORATION_CREDIT = "proration_credit"
        DISCOUNT = "discount"

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="lines")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    description = models.CharField(max_length=200)
    amount = models.BigIntegerField()
    price = models.ForeignKey(
        Price, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    # The seats the subscription pays ``price`` for from ``period_start`` on (a per-seat price; 1
    # otherwise). A plain integer: a check constraint would scan every line when it is added.
    seats = models.IntegerField(default=1, db_default=1)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["plan_charge", "proration_debit"], amount__gte=0)
                | Q(kind__in=["proration_credit", "discount"], amount__lte=0),
                name="invoice_line_amount_sign_by_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.invoice.status != InvoiceStatus.DRAFT:
            raise InvoiceImmutable(details={"invoice": self.invoice.public_id})
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if self.invoice.status != InvoiceStatus.DRAFT:
            raise InvoiceImmutable(details={"invoice": self.invoice.public_id})
        return super().delete(*args, **kwargs)
