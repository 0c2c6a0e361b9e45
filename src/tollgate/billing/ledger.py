"""The ledger: balanced postings and what each money movement posts.

Every money movement writes one ledger transaction whose entries sum to zero in every currency;
reports and reconciliation read them. The builders below (``*_posting``) say what each movement
posts, once, for the one-by-one services and the set-wise renewals alike; ``ledger_post`` and
``ledger_post_many`` check the balance and write them in the caller's transaction. Ledger rows are
never changed or removed: a correction is a reversing transaction.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Required, TypedDict

from tollgate.billing.errors import LedgerUnbalanced
from tollgate.billing.models import (
    Customer,
    Invoice,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    PaymentAttempt,
    Refund,
)
from tollgate.billing.states import InvoiceStatus
from tollgate.core.money import Money

if TYPE_CHECKING:
    from tollgate.billing.locks import PaymentLocks, RefundLocks


class Posting(TypedDict, total=False):
    """One ledger transaction to post (the arguments of ``ledger_post``)."""

    kind: Required[LedgerTransaction.Kind]
    customer: Required[Customer]
    invoice: Required[Invoice]
    occurred_at: Required[dt.datetime]
    entries: Required[Sequence[tuple[LedgerAccount, Money]]]
    payment: PaymentAttempt | None
    refund: Refund | None


def ledger_post(
    *,
    kind: LedgerTransaction.Kind,
    customer: Customer,
    invoice: Invoice,
    occurred_at: dt.datetime,
    entries: Sequence[tuple[LedgerAccount, Money]],
    payment: PaymentAttempt | None = None,
    refund: Refund | None = None,
) -> LedgerTransaction:
    """Post one balanced transaction; refuse it unless its entries sum to zero in every currency."""
    [posted] = ledger_post_many(
        [
            Posting(
                kind=kind,
                customer=customer,
                invoice=invoice,
                occurred_at=occurred_at,
                entries=entries,
                payment=payment,
                refund=refund,
            )
        ]
    )
    return posted


def ledger_post_many(postings: Sequence[Posting]) -> list[LedgerTransaction]:
    """Post balanced transactions with two statements whatever their number; refuse them all
    unless each one's entries sum to zero in every currency."""
    for posting in postings:
        entries = posting["entries"]
        if not entries or any(money.amount == 0 for _, money in entries):
            raise ValueError("a ledger transaction needs entries, none of them zero")
        balance: dict[str, int] = defaultdict(int)
        for _, money in entries:
            balance[money.currency] += money.amount
        if any(balance.values()):
            raise LedgerUnbalanced(details={"kind": str(posting["kind"]), "balance": dict(balance)})
    posted = LedgerTransaction.objects.bulk_create(
        [
            LedgerTransaction(
                kind=posting["kind"],
                customer=posting["customer"],
                invoice=posting["invoice"],
                payment=posting.get("payment"),
                refund=posting.get("refund"),
                occurred_at=posting["occurred_at"],
            )
            for posting in postings
        ]
    )
    LedgerEntry.objects.bulk_create(
        [
            LedgerEntry(
                transaction=transaction_row,
                account=account,
                amount=money.amount,
                currency=money.currency,
            )
            for transaction_row, posting in zip(posted, postings, strict=True)
            for account, money in posting["entries"]
        ]
    )
    return posted


# --- What each movement posts ---------------------------------------------------------------------------
def invoice_finalized_posting(
    *, customer: Customer, invoice: Invoice, at: dt.datetime, discount: int = 0
) -> Posting:
    """What finalizing ``invoice`` posts: its total becomes receivable; revenue is earned at list
    price and what its DISCOUNT lines took off (``discount``, positive) is booked to the
    discounts account (contra-revenue), so revenue less discounts is what is owed."""
    return Posting(
        kind=LedgerTransaction.Kind.INVOICE_FINALIZED,
        customer=customer,
        invoice=invoice,
        occurred_at=at,
        entries=_nonzero(
            invoice.currency,
            (LedgerAccount.RECEIVABLE, invoice.total),
            (LedgerAccount.DISCOUNTS, discount),
            (LedgerAccount.REVENUE, -invoice.total - discount),
        ),
    )


def _nonzero(
    currency: str, *entries: tuple[LedgerAccount, int]
) -> list[tuple[LedgerAccount, Money]]:
    return [(account, Money(amount, currency)) for account, amount in entries if amount]


def invoice_closed_posting(
    *,
    customer: Customer,
    invoice: Invoice,
    kind: LedgerTransaction.Kind,
    debit: LedgerAccount,
    at: dt.datetime,
    discount: int = 0,
) -> Posting:
    """What closing an open (or written-off) invoice posts: what it was owed leaves receivables
    (or bad debt, where a write-off moved it) for ``debit``. Voiding it (``debit`` revenue) also
    takes back its ``discount`` (as ``invoice_finalized_posting`` booked it), so a voided invoice
    leaves neither revenue nor discount. Read before the status changes."""
    credit = (
        LedgerAccount.BAD_DEBT
        if invoice.status == InvoiceStatus.UNCOLLECTIBLE
        else LedgerAccount.RECEIVABLE
    )
    return Posting(
        kind=kind,
        customer=customer,
        invoice=invoice,
        occurred_at=at,
        entries=_nonzero(
            invoice.currency,
            (debit, invoice.total + discount),
            (LedgerAccount.DISCOUNTS, -discount),
            (credit, -invoice.total),
        ),
    )


def write_off_reversed_posting(*, customer: Customer, invoice: Invoice, at: dt.datetime) -> Posting:
    """What paying a written-off invoice after all posts first: what it owes moves back from bad
    debt to receivable (reversing the write-off)."""
    return Posting(
        kind=LedgerTransaction.Kind.WRITE_OFF_REVERSED,
        customer=customer,
        invoice=invoice,
        occurred_at=at,
        entries=[
            (LedgerAccount.RECEIVABLE, Money(invoice.total, invoice.currency)),
            (LedgerAccount.BAD_DEBT, Money(-invoice.total, invoice.currency)),
        ],
    )


def payment_captured_posting(*, locks: PaymentLocks, at: dt.datetime) -> Posting:
    """What a captured payment posts: the gateway holds the money the invoice was owed."""
    payment = locks.payment
    return Posting(
        kind=LedgerTransaction.Kind.PAYMENT_CAPTURED,
        customer=locks.customer,
        invoice=locks.invoice,
        payment=payment,
        occurred_at=at,
        entries=[
            (LedgerAccount.GATEWAY_CLEARING, Money(payment.amount, payment.currency)),
            (LedgerAccount.RECEIVABLE, Money(-payment.amount, payment.currency)),
        ],
    )


def refund_succeeded_posting(*, locks: RefundLocks, at: dt.datetime) -> Posting:
    """What a refund the gateway made posts: the money leaves the gateway's clearing account."""
    refund = locks.refund
    return Posting(
        kind=LedgerTransaction.Kind.REFUND_SUCCEEDED,
        customer=locks.customer,
        invoice=locks.invoice,
        payment=locks.payment,
        refund=refund,
        occurred_at=at,
        entries=[
            (LedgerAccount.REFUNDS, Money(refund.amount, refund.currency)),
            (LedgerAccount.GATEWAY_CLEARING, Money(-refund.amount, refund.currency)),
        ],
    )
