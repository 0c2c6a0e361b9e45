"""The books' integrity check: every ledger transaction balances, and the ledger agrees with the
invoices, payments and refunds it records (``manage.py ledger_check``, the reconciliation report,
the restore drill and the tests ask it)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum

from tollgate.billing.models import (
    Invoice,
    InvoiceLine,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    PaymentAttempt,
    Refund,
)
from tollgate.billing.states import (
    InvoiceStatus,
    PaymentStatus,
    RefundStatus,
)


@dataclass(frozen=True, slots=True)
class LedgerProblem:
    kind: str
    reference: str
    detail: str


@dataclass
class LedgerReport:
    transactions_checked: int = 0
    invoices_checked: int = 0
    payments_checked: int = 0
    problems: list[LedgerProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def ledger_check() -> LedgerReport:
    """Verify the books: every ledger transaction sums to zero per currency, every invoice's total
    equals its lines and matches its payments and its receivable, every payment's refunded amount
    matches its refunds, and every money event was posted exactly once."""
    report = LedgerReport()
    _check_transactions(report)
    _check_invoices(report)
    _check_payments(report)
    return report


def _check_transactions(report: LedgerReport) -> None:
    report.transactions_checked = LedgerTransaction.objects.count()
    unbalanced = (
        LedgerEntry.objects.values("transaction__public_id", "currency")
        .annotate(balance=Sum("amount"))
        .exclude(balance=0)
        .order_by("transaction__public_id")
    )
    for row in unbalanced:
        report.problems.append(
            LedgerProblem(
                kind="transaction_unbalanced",
                reference=row["transaction__public_id"],
                detail=f"sums to {row['balance']} {row['currency']}",
            )
        )
    empty = LedgerTransaction.objects.annotate(entry_count=Count("entries")).filter(entry_count=0)
    for public_id in empty.values_list("public_id", flat=True):
        report.problems.append(
            LedgerProblem(kind="transaction_empty", reference=public_id, detail="has no entries")
        )


def _per_invoice(queryset: QuerySet[Any], key: str) -> dict[int, int]:
    """Sum of ``amount`` grouped by ``key`` (an invoice id path)."""
    rows = queryset.order_by().values(key).annotate(total=Sum("amount"))
    return {row[key]: row["total"] or 0 for row in rows}


def _check_invoices(report: LedgerReport) -> None:
    line_sums = _per_invoice(InvoiceLine.objects.all(), "invoice_id")
    captured = _per_invoice(
        PaymentAttempt.objects.filter(status=PaymentStatus.SUCCEEDED), "invoice_id"
    )
    receivable = _per_invoice(
        LedgerEntry.objects.filter(account=LedgerAccount.RECEIVABLE), "transaction__invoice_id"
    )
    postings: dict[tuple[int, str], int] = defaultdict(int)
    for row in (
        LedgerTransaction.objects.order_by().values("invoice_id", "kind").annotate(n=Count("id"))
    ):
        postings[(row["invoice_id"], row["kind"])] = row["n"]
    for invoice in Invoice.objects.only(
        "id", "public_id", "status", "total", "amount_paid"
    ).iterator():
        report.invoices_checked += 1
        report.problems.extend(
            LedgerProblem(kind=kind, reference=invoice.public_id, detail=detail)
            for kind, detail in _invoice_problems(
                invoice,
                lines=line_sums.get(invoice.pk, 0),
                captured=captured.get(invoice.pk, 0),
                receivable=receivable.get(invoice.pk, 0),
                postings=postings,
            )
        )


def _invoice_problems(
    invoice: Invoice,
    *,
    lines: int,
    captured: int,
    receivable: int,
    postings: dict[tuple[int, str], int],
) -> list[tuple[str, str]]:
    problems = []
    if lines != invoice.total:
        problems.append(
            ("invoice_total_mismatch", f"lines sum to {lines}, total is {invoice.total}")
        )
    if captured != invoice.amount_paid:
        problems.append(
            (
                "invoice_payments_mismatch",
                f"captured {captured}, amount paid is {invoice.amount_paid}",
            )
        )
    posted = invoice.status != InvoiceStatus.DRAFT and invoice.total > 0
    # A paid or void invoice may have been written off before, once: paid, the write-off was
    # reversed; voided, the void took it out of bad debt.
    after_write_off = (
        posted
        and invoice.status in (InvoiceStatus.PAID, InvoiceStatus.VOID)
        and postings[(invoice.pk, LedgerTransaction.Kind.INVOICE_WRITTEN_OFF)] > 0
    )
    paid_after_write_off = after_write_off and invoice.status == InvoiceStatus.PAID
    # Each posting an invoice should have, by its status; a void or written-off invoice owes nothing.
    expected = {
        LedgerTransaction.Kind.INVOICE_FINALIZED: int(posted),
        LedgerTransaction.Kind.INVOICE_VOIDED: int(posted and invoice.status == InvoiceStatus.VOID),
        LedgerTransaction.Kind.INVOICE_WRITTEN_OFF: int(
            after_write_off or (posted and invoice.status == InvoiceStatus.UNCOLLECTIBLE)
        ),
        LedgerTransaction.Kind.WRITE_OFF_REVERSED: int(paid_after_write_off),
    }
    for kind, count in expected.items():
        if postings[(invoice.pk, kind)] != count:
            problems.append(
                (
                    "invoice_posting_missing",
                    f"{kind} posted {postings[(invoice.pk, kind)]} times, expected {count}",
                )
            )
    settled = invoice.status in (InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE)
    expected_receivable = invoice.total - invoice.amount_paid if posted and not settled else 0
    if receivable != expected_receivable:
        problems.append(
            (
                "invoice_receivable_mismatch",
                f"receivable {receivable}, expected {expected_receivable}",
            )
        )
    return problems


def _check_payments(report: LedgerReport) -> None:
    reserved = {
        row["payment_id"]: row["total"]
        for row in Refund.objects.filter(
            Q(status=RefundStatus.PENDING) | Q(status=RefundStatus.SUCCEEDED)
        )
        .values("payment_id")
        .annotate(total=Sum("amount"))
    }
    posted_captures = set(
        LedgerTransaction.objects.filter(kind=LedgerTransaction.Kind.PAYMENT_CAPTURED).values_list(
            "payment_id", flat=True
        )
    )
    posted_refunds = set(
        LedgerTransaction.objects.filter(kind=LedgerTransaction.Kind.REFUND_SUCCEEDED).values_list(
            "refund_id", flat=True
        )
    )
    for payment in PaymentAttempt.objects.only(
        "id", "public_id", "status", "amount_refunded"
    ).iterator():
        report.payments_checked += 1
        if reserved.get(payment.pk, 0) != payment.amount_refunded:
            report.problems.append(
                LedgerProblem(
                    kind="payment_refunds_mismatch",
                    reference=payment.public_id,
                    detail=f"refunds total {reserved.get(payment.pk, 0)}, recorded {payment.amount_refunded}",
                )
            )
        if (payment.status == PaymentStatus.SUCCEEDED) != (payment.pk in posted_captures):
            report.problems.append(
                LedgerProblem(
                    kind="payment_posting_mismatch",
                    reference=payment.public_id,
                    detail=f"status {payment.status}, capture posted: {payment.pk in posted_captures}",
                )
            )
    for refund in Refund.objects.filter(status=RefundStatus.SUCCEEDED).exclude(
        pk__in=posted_refunds
    ):
        report.problems.append(
            LedgerProblem(
                kind="refund_posting_missing", reference=refund.public_id, detail="not posted"
            )
        )
