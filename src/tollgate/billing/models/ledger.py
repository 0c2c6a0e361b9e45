"""The ledger: balanced transactions of entries, append-only."""

from __future__ import annotations

from typing import Any

import pgtrigger
from django.db import models
from django.db.models import Q

from tollgate.billing.errors import LedgerImmutable
from tollgate.billing.models.common import currency_check
from tollgate.billing.models.customers import Customer
from tollgate.billing.models.invoices import Invoice
from tollgate.billing.models.payments import PaymentAttempt, Refund
from tollgate.core import clock
from tollgate.core.ids import (
    new_txn_id,
)


class LedgerAccount(models.TextChoices):
    """The chart of accounts. Entries are debits (positive) and credits (negative)."""

    RECEIVABLE = "receivable", "Accounts receivable"
    REVENUE = "revenue", "Revenue"
    GATEWAY_CLEARING = "gateway_clearing", "Funds held by the gateway"
    REFUNDS = "refunds", "Refunds (contra-revenue)"
    DISCOUNTS = "discounts", "Discounts (contra-revenue)"
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
            currency_check("ledger_entry"),
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
