"""Invoice writes: a one-off draft, the invoice of a subscription period, and finalizing a draft
(numbered, opened, posted to the ledger). Paying an invoice is in ``services.payments``."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing import periods
from tollgate.billing.locks import lock_customer, lock_invoice, lock_subscription
from tollgate.billing.models import Customer, Invoice, InvoiceLine, Subscription
from tollgate.billing.states import InvoiceStatus
from tollgate.billing.steps.invoices import (
    LineSpec,
    invoice_draft_for_period_locked,
    invoice_finalize_locked,
    invoice_lines_add_locked,
)
from tollgate.core.errors import ValidationFailed
from tollgate.core.money import validate_currency

_LINE_SIGNS = {
    InvoiceLine.Kind.PLAN_CHARGE: 1,
    InvoiceLine.Kind.PRORATION_DEBIT: 1,
    InvoiceLine.Kind.PRORATION_CREDIT: -1,
    InvoiceLine.Kind.DISCOUNT: -1,
}


def invoice_draft_create(
    *, customer: Customer, currency: str, lines: Sequence[LineSpec], actor: User | None = None
) -> Invoice:
    """A one-off draft invoice for ``customer`` with ``lines``; its total is their sum.

    Charges and debits are positive, credits and discounts negative, and the total cannot be
    negative. It is billed once ``invoice_finalize`` numbers it.
    """
    try:
        code = validate_currency(currency)
    except ValueError as exc:
        raise ValidationFailed(str(exc), details={"field": "currency"}) from exc
    for index, line in enumerate(lines):
        if line.amount * _LINE_SIGNS[line.kind] < 0:
            raise ValidationFailed(
                f"A {line.kind.label.lower()} line cannot be {line.amount}.",
                details={"field": f"lines[{index}].amount"},
            )
        if line.price is not None and line.price.currency != code:
            raise ValidationFailed(
                "Every line must be in the invoice's currency.",
                details={"field": f"lines[{index}].price"},
            )
    if not lines or sum(line.amount for line in lines) < 0:
        raise ValidationFailed("An invoice needs lines and cannot total less than zero.")
    with transaction.atomic(durable=True):
        locked = lock_customer(customer)
        invoice = Invoice.objects.create(
            customer=locked, billing_reason=Invoice.BillingReason.MANUAL, currency=code
        )
        invoice_lines_add_locked(invoice=invoice, lines=lines)
        audit_record(
            action="billing.invoice_drafted",
            actor=actor,
            target=invoice,
            details={"customer": locked.public_id, "total": invoice.total},
        )
    return invoice


def invoice_create_for_period(
    *,
    subscription: Subscription,
    period: periods.Period,
    billing_reason: Invoice.BillingReason = Invoice.BillingReason.SUBSCRIPTION_CYCLE,
    actor: User | None = None,
) -> Invoice:
    """Create and finalize the invoice of ``subscription`` for ``period`` at its current price.

    Idempotent per period: when the invoice for that period already exists (another worker made it)
    it is returned unchanged, so the billing clock can never bill a period twice.
    """
    with transaction.atomic(durable=True):
        locks = lock_subscription(subscription)
        existing = (
            Invoice.objects.filter(
                subscription=locks.subscription,
                period_start=period.start,
                billing_reason=billing_reason,
            )
            .exclude(status=InvoiceStatus.VOID)
            .first()
        )
        if existing is not None:
            return existing
        invoice = invoice_draft_for_period_locked(
            subscription=locks.subscription, period=period, billing_reason=billing_reason
        )
        invoice_finalize_locked(
            customer=locks.customer, subscription=locks.subscription, invoice=invoice
        )
        audit_record(
            action="billing.invoice_created",
            actor=actor,
            target=invoice,
            details={"subscription": locks.subscription.public_id, "total": invoice.total},
        )
    return invoice


def invoice_finalize(*, invoice: Invoice, actor: User | None = None) -> Invoice:
    """Finalize a draft: check its total against its lines, give it the next number (gapless, taken
    under the customer's row lock), open it and post it to the ledger. From here it is immutable.
    An invoice of zero is paid at once."""
    with transaction.atomic(durable=True):
        locks = lock_invoice(invoice)
        invoice_finalize_locked(
            customer=locks.customer, subscription=locks.subscription, invoice=locks.invoice
        )
        audit_record(
            action="billing.invoice_finalized",
            actor=actor,
            target=locks.invoice,
            details={"number": locks.invoice.number, "total": locks.invoice.total},
        )
    return locks.invoice
