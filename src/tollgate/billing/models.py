"""Billing data: customers, cards, subscriptions, invoices, payments, refunds and the ledger.

Data and constraints only; every write goes through ``billing.services``. The database is the last
line of defence: one live subscription per customer, one live payment attempt per invoice, refunds
never above the captured amount and invoice numbers unique are all enforced by constraints, not by
Python alone. Amounts are integers in minor units; currencies are ISO 4217 codes.
"""

from __future__ import annotations

from typing import Any

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models import F, Q

from tollgate.billing.errors import InvoiceImmutable, LedgerImmutable
from tollgate.billing.states import (
    PAYMENT_LIVE,
    SUBSCRIPTION_ENDED,
    InvoiceStatus,
    PaymentStatus,
    RefundStatus,
    SubscriptionStatus,
)
from tollgate.catalog.models import Price
from tollgate.core import clock
from tollgate.core.ids import (
    new_cus_id,
    new_inv_id,
    new_invoice_prefix,
    new_pay_id,
    new_pm_id,
    new_public_id,
    new_rec_id,
    new_ref_id,
    new_sub_id,
    new_txn_id,
)

CURRENCY = Q(currency__regex=r"^[A-Z]{3}$")


def _currency_check(model: str) -> models.CheckConstraint:
    return models.CheckConstraint(condition=CURRENCY, name=f"{model}_currency_iso4217")


class Customer(models.Model):
    """Who pays. Owned by one account today; an organisation can become the owner later, which is
    why the owner is a nullable link guarded by a constraint rather than the primary key.

    ``next_invoice_sequence`` is taken under this row's lock when an invoice is finalized, so numbers
    are gapless per customer without serializing every worker on one counter.
    """

    public_id = models.CharField(max_length=32, unique=True, default=new_cus_id, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="billing_customer",
    )
    email = models.EmailField(max_length=254, help_text="Where receipts and payment notices go")
    name = models.CharField(max_length=150, blank=True)
    # The operator's own id for this customer (their user id), set through the API.
    external_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    invoice_prefix = models.CharField(
        max_length=12, unique=True, default=new_invoice_prefix, editable=False
    )
    next_invoice_sequence = models.PositiveIntegerField(default=1)
    gateway = models.CharField(max_length=32, blank=True)
    gateway_reference = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=clock.now, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(user__isnull=False), name="customer_has_owner"),
            models.CheckConstraint(
                condition=Q(next_invoice_sequence__gte=1), name="customer_invoice_sequence_positive"
            ),
            models.CheckConstraint(
                condition=Q(invoice_prefix__regex=r"^[0-9A-Z]{4,12}$"),
                name="customer_invoice_prefix_format",
            ),
            models.UniqueConstraint(
                fields=["gateway", "gateway_reference"],
                condition=~Q(gateway_reference=""),
                name="customer_gateway_reference_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id


class PaymentMethod(models.Model):
    """A card saved on the gateway: its token, brand, last four digits and expiry. Never the number."""

    public_id = models.CharField(max_length=32, unique=True, default=new_pm_id, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="payment_methods")
    gateway = models.CharField(max_length=32)
    gateway_token = models.CharField(max_length=255)
    brand = models.CharField(max_length=32)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=clock.now, editable=False)
    detached_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "gateway_token"], name="payment_method_token_unique"
            ),
            models.UniqueConstraint(
                fields=["customer"],
                condition=Q(is_default=True),
                name="payment_method_one_default_per_customer",
            ),
            models.CheckConstraint(
                condition=Q(last4__regex=r"^[0-9]{4}$"), name="payment_method_last4_digits"
            ),
            models.CheckConstraint(
                condition=Q(exp_month__gte=1, exp_month__lte=12), name="payment_method_exp_month"
            ),
            models.CheckConstraint(
                condition=Q(exp_year__gte=2000, exp_year__lte=9999), name="payment_method_exp_year"
            ),
            models.CheckConstraint(
                condition=Q(is_default=False) | Q(detached_at__isnull=True),
                name="payment_method_detached_not_default",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.brand} •••• {self.last4}"


class Subscription(models.Model):
    """A customer's subscription to a price. Periods follow ``billing_anchor`` (see periods.py).

    ``scheduled_price`` is a change that takes effect at ``current_period_end`` (a downgrade);
    ``cancel_at_period_end`` ends it then. ``canceled_at`` is when cancellation was asked for and
    ``ended_at`` when the subscription actually ended.
    """

    class CancellationReason(models.TextChoices):
        """Why the customer asked to cancel (the short survey of the cancel page)."""

        TOO_EXPENSIVE = "too_expensive", "It costs too much"
        MISSING_FEATURES = "missing_features", "It lacks features I need"
        SWITCHED_SERVICE = "switched_service", "I moved to another service"
        NOT_USING = "not_using", "I don't use it enough"
        TECHNICAL_ISSUES = "technical_issues", "Technical problems"
        OTHER = "other", "Something else"

    public_id = models.CharField(max_length=32, unique=True, default=new_sub_id, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="subscriptions")
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=24, choices=SubscriptionStatus.choices)
    billing_anchor = models.DateTimeField()
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    trial_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    canceled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    scheduled_price = models.ForeignKey(
        Price, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # The customer's answer to the cancellation survey, kept with ``canceled_at``.
    cancellation_reason = models.CharField(
        max_length=24, choices=CancellationReason.choices, blank=True
    )
    cancellation_comment = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=clock.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer"],
                condition=~Q(status__in=sorted(SUBSCRIPTION_ENDED)),
                name="subscription_one_live_per_customer",
            ),
            models.CheckConstraint(
                condition=Q(status__in=SubscriptionStatus.values), name="subscription_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(current_period_end__gt=F("current_period_start")),
                name="subscription_period_ordered",
            ),
            models.CheckConstraint(
                condition=(
                    Q(status__in=sorted(SUBSCRIPTION_ENDED), ended_at__isnull=False)
                    | (~Q(status__in=sorted(SUBSCRIPTION_ENDED)) & Q(ended_at__isnull=True))
                ),
                name="subscription_ended_at_iff_ended",
            ),
            models.CheckConstraint(
                condition=~Q(status=SubscriptionStatus.TRIALING) | Q(trial_end__isnull=False),
                name="subscription_trialing_has_trial_end",
            ),
            models.CheckConstraint(
                condition=Q(scheduled_price__isnull=True) | ~Q(scheduled_price=F("price")),
                name="subscription_scheduled_price_differs",
            ),
        ]
        indexes = [
            models.Index(
                fields=["current_period_end"],
                condition=Q(
                    status__in=[
                        SubscriptionStatus.TRIALING,
                        SubscriptionStatus.ACTIVE,
                        SubscriptionStatus.PAST_DUE,
                    ]
                ),
                name="subscription_due",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id


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
            _currency_check("invoice"),
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
            _currency_check("payment"),
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
            _currency_check("refund"),
            models.CheckConstraint(
                condition=Q(status__in=RefundStatus.values), name="refund_status_valid"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(condition=~Q(note=""), name="refund_has_note"),
        ]

    def __str__(self) -> str:
        return self.public_id


class LedgerAccount(models.TextChoices):
    """The chart of accounts. Entries are debits (positive) and credits (negative)."""

    RECEIVABLE = "receivable", "Accounts receivable"
    REVENUE = "revenue", "Revenue"
    GATEWAY_CLEARING = "gateway_clearing", "Funds held by the gateway"
    REFUNDS = "refunds", "Refunds (contra-revenue)"
    BAD_DEBT = "bad_debt", "Bad debt (written-off invoices)"


class AppendOnly(models.Model):
    """Ledger rows are facts: once written they are never changed or removed."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise LedgerImmutable()
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise LedgerImmutable()


class LedgerTransaction(AppendOnly):
    """A balanced group of ledger entries recording one money event; it sums to zero per currency.

    Each event is recorded once: a unique constraint per kind on what it records makes a second
    posting of the same event fail.
    """

    class Kind(models.TextChoices):
        INVOICE_FINALIZED = "invoice_finalized"
        INVOICE_VOIDED = "invoice_voided"
        INVOICE_WRITTEN_OFF = "invoice_written_off"
        # A written-off invoice paid after all: what it owes is receivable again, then captured.
        WRITE_OFF_REVERSED = "write_off_reversed"
        PAYMENT_CAPTURED = "payment_captured"
        REFUND_SUCCEEDED = "refund_succeeded"

    public_id = models.CharField(max_length=32, unique=True, default=new_txn_id, editable=False)
    kind = models.CharField(max_length=24, choices=Kind.choices)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+")
    invoice = models.ForeignKey(
        Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    payment = models.ForeignKey(
        PaymentAttempt, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    refund = models.ForeignKey(
        Refund, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(default=clock.now, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    kind__in=[
                        "invoice_finalized",
                        "invoice_voided",
                        "invoice_written_off",
                        "write_off_reversed",
                        "payment_captured",
                        "refund_succeeded",
                    ]
                ),
                name="ledger_transaction_kind_valid",
            ),
            models.CheckConstraint(
                condition=Q(invoice__isnull=False),
                name="ledger_transaction_names_invoice",
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=["payment_captured", "refund_succeeded"])
                | Q(payment__isnull=False),
                name="ledger_transaction_names_payment",
            ),
            models.CheckConstraint(
                condition=~Q(kind="refund_succeeded") | Q(refund__isnull=False),
                name="ledger_transaction_names_refund",
            ),
            models.UniqueConstraint(
                fields=["invoice"],
                condition=Q(kind="invoice_finalized"),
                name="ledger_invoice_finalized_once",
            ),
            models.UniqueConstraint(
                fields=["invoice"],
                condition=Q(kind="invoice_voided"),
                name="ledger_invoice_voided_once",
            ),
            models.UniqueConstraint(
                fields=["invoice"],
                condition=Q(kind="invoice_written_off"),
                name="ledger_invoice_written_off_once",
            ),
            models.UniqueConstraint(
                fields=["invoice"],
                condition=Q(kind="write_off_reversed"),
                name="ledger_write_off_reversed_once",
            ),
            models.UniqueConstraint(
                fields=["payment"],
                condition=Q(kind="payment_captured"),
                name="ledger_payment_captured_once",
            ),
            models.UniqueConstraint(
                fields=["refund"],
                condition=Q(kind="refund_succeeded"),
                name="ledger_refund_succeeded_once",
            ),
        ]
        # PostgreSQL refuses any change or removal (TRUNCATE is not refused).
        triggers = [
            pgtrigger.Protect(
                name="ledger_transaction_append_only",
                operation=pgtrigger.Update | pgtrigger.Delete,
            )
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.kind}"


class LedgerEntry(AppendOnly):
    transaction = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="entries"
    )
    account = models.CharField(max_length=24, choices=LedgerAccount.choices)
    amount = models.BigIntegerField(help_text="Debit positive, credit negative, in minor units")
    currency = models.CharField(max_length=3)

    class Meta:
        constraints = [
            _currency_check("ledger_entry"),
            models.CheckConstraint(condition=~Q(amount=0), name="ledger_entry_amount_not_zero"),
            models.CheckConstraint(
                condition=Q(account__in=LedgerAccount.values), name="ledger_entry_account_valid"
            ),
        ]
        indexes = [models.Index(fields=["account", "currency"], name="ledger_entry_account")]
        triggers = [
            pgtrigger.Protect(
                name="ledger_entry_append_only", operation=pgtrigger.Update | pgtrigger.Delete
            )
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.amount} {self.currency}"


# The sandbox gateway keeps its own records in this app's database tables (it is not an app).
from tollgate.billing.gateways.sandbox.models import (  # noqa: E402, F401
    SandboxCard,
    SandboxCharge,
    SandboxCustomer,
    SandboxRefund,
    SandboxSetupSession,
)
from tollgate.billing.gateways.stripe.models import StripeRequest  # noqa: E402, F401


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
            _currency_check("dispute"),
            models.UniqueConstraint(
                fields=["gateway", "gateway_reference"], name="dispute_once_per_gateway"
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="dispute_amount_not_negative"),
        ]

    def __str__(self) -> str:
        return self.public_id
