"""Invoice steps: drafts and their lines, finalizing (number, open, post), paying in full, voiding
and writing off, in the caller's transaction on rows it has locked (customer first: it guards the
invoice number). They never open a transaction or call a gateway."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.db.models import Case, CharField, F, Q, Sum, Value, When

from tollgate.audit.services import audit_record
from tollgate.billing import discounts, periods, previews
from tollgate.billing.conf import InvoiceNumbering, billing_settings
from tollgate.billing.emails import subscription_confirmation_send
from tollgate.billing.errors import InvoiceImmutable, InvoiceTotalsMismatch
from tollgate.billing.gateways.registry import gateway_charge_step
from tollgate.billing.ledger import (
    invoice_closed_posting,
    invoice_finalized_posting,
    ledger_post,
    ledger_post_many,
    write_off_reversed_posting,
)
from tollgate.billing.locks import SubscriptionLocks
from tollgate.billing.models import (
    Customer,
    Discount,
    Invoice,
    InvoiceLine,
    InvoiceNumberSequence,
    LedgerAccount,
    LedgerTransaction,
    Subscription,
)
from tollgate.billing.states import INVOICE, InvoiceStatus, SubscriptionStatus
from tollgate.billing.steps.subscriptions import subscription_move_locked
from tollgate.catalog.models import Price
from tollgate.core import clock
from tollgate.core.events import event_publish


@dataclass(frozen=True, slots=True)
class LineSpec:
    kind: InvoiceLine.Kind
    description: str
    amount: int
    price: Price | None = None
    period: periods.Period | None = None
    seats: int = 1


@dataclass(frozen=True, slots=True)
class PeriodInvoice:
    """The draft invoice of one subscription period and its lines, not saved yet."""

    invoice: Invoice
    lines: list[InvoiceLine]


def period_invoice_build(
    *,
    subscription: Subscription,
    period: periods.Period,
    billing_reason: Invoice.BillingReason,
    discount: Discount | None = None,
) -> PeriodInvoice:
    """The draft invoice of the subscription's current price for ``period``, with its plan line,
    the DISCOUNT line of ``discount`` (its live discount, ``discounts.discounts_live``) where that
    covers the period, and a total equal to their sum; not saved. The one builder of a period's
    invoice, used one by one (``invoice_draft_for_period_locked``) and set-wise
    (``invoice_drafts_for_periods_locked``)."""
    price = subscription.price
    invoice = Invoice(
        customer_id=subscription.customer_id,
        subscription=subscription,
        billing_reason=billing_reason,
        currency=price.currency,
        period_start=period.start,
        period_end=period.end,
    )
    lines = [plan_charge_line(price=price, period=period, seats=subscription.seats)]
    off = discounts.discount_amount_for(
        discount=discount,
        price=price,
        amount=subscription.amount,
        period_start=period.start,
        step=gateway_charge_step(price.currency) if discount is not None else 1,
    )
    if off and discount is not None:
        lines.append(discount_line(discount=discount, amount=off, price=price, period=period))
    invoice.total = sum(line.amount for line in lines)
    return PeriodInvoice(invoice=invoice, lines=invoice_line_rows(invoice=invoice, lines=lines))


def discount_line(
    *, discount: Discount, amount: int, price: Price | None, period: periods.Period | None
) -> LineSpec:
    """The DISCOUNT line taking ``amount`` (positive) off for ``discount``."""
    return LineSpec(
        kind=InvoiceLine.Kind.DISCOUNT,
        description=f"Discount: {discount.coupon.name}"[:200],
        amount=-amount,
        price=price,
        period=period,
    )


def invoice_draft_for_period_locked(
    *, subscription: Subscription, period: periods.Period, billing_reason: Invoice.BillingReason
) -> Invoice:
    """A draft invoice of the subscription's current price for ``period`` (see
    ``period_invoice_build``), saved with its lines."""
    [invoice] = invoice_drafts_for_periods_locked(
        due=[(subscription, period)], billing_reason=billing_reason
    )
    return invoice


def invoice_drafts_for_periods_locked(
    *,
    due: Sequence[tuple[Subscription, periods.Period]],
    billing_reason: Invoice.BillingReason,
) -> list[Invoice]:
    """``invoice_draft_for_period_locked`` for many (subscription, period) pairs, in a fixed
    number of statements whatever their number (their discounts read in one or two)."""
    live = discounts.discounts_live(subscription.pk for subscription, _ in due)
    return period_invoices_save_locked(
        [
            period_invoice_build(
                subscription=subscription,
                period=period,
                billing_reason=billing_reason,
                discount=live.get(subscription.pk),
            )
            for subscription, period in due
        ]
    )


def period_invoices_save_locked(built: Sequence[PeriodInvoice]) -> list[Invoice]:
    """Save built period invoices as drafts with their lines, two statements whatever their
    number. Lines are written to drafts only (as ``InvoiceLine.save`` insists)."""
    invoices = [item.invoice for item in built]
    for invoice in invoices:
        if invoice.status != InvoiceStatus.DRAFT:
            raise InvoiceImmutable(details={"invoice": invoice.public_id})
    Invoice.objects.bulk_create(invoices)
    InvoiceLine.objects.bulk_create([line for item in built for line in item.lines])
    return invoices


def plan_charge_line(*, price: Price, period: periods.Period, seats: int = 1) -> LineSpec:
    """The line that charges ``price`` for ``period`` (for ``seats`` seats if it is per seat)."""
    dates = f"({period.start:%Y-%m-%d} to {period.end:%Y-%m-%d})"
    return LineSpec(
        kind=InvoiceLine.Kind.PLAN_CHARGE,
        description=f"{price.plan.name}{seats_label(price, seats)} {dates}",
        amount=price.amount_for(seats),
        price=price,
        period=period,
        seats=seats,
    )


def seats_label(price: Price, seats: int) -> str:
    """``, 3 seats`` after a per-seat price's plan name, nothing after a flat one's."""
    if not price.per_seat:
        return ""
    return f", {seats} seat" if seats == 1 else f", {seats} seats"


def invoice_lines_add_locked(*, invoice: Invoice, lines: Sequence[LineSpec]) -> None:
    """Add lines to a draft and keep its total equal to the sum of its lines."""
    if invoice.status != InvoiceStatus.DRAFT:
        raise InvoiceImmutable(details={"invoice": invoice.public_id})
    InvoiceLine.objects.bulk_create(invoice_line_rows(invoice=invoice, lines=lines))
    invoice.total += sum(line.amount for line in lines)
    invoice.save(update_fields=["total"])


def invoice_line_rows(*, invoice: Invoice, lines: Sequence[LineSpec]) -> list[InvoiceLine]:
    """The rows of ``lines`` on ``invoice``, not saved yet."""
    return [
        InvoiceLine(
            invoice=invoice,
            kind=line.kind,
            description=line.description,
            amount=line.amount,
            price=line.price,
            period_start=line.period.start if line.period else None,
            period_end=line.period.end if line.period else None,
            seats=line.seats,
        )
        for line in lines
    ]


def invoice_finalize_locked(
    *, customer: Customer, subscription: Subscription | None, invoice: Invoice
) -> None:
    """See ``invoice_finalize``; the caller holds the customer's lock, which guards the number."""
    INVOICE.check(current=invoice.status, target=InvoiceStatus.OPEN)
    sums = invoice.lines.aggregate(total=Sum("amount"), discount=_DISCOUNT_SUM)
    line_sum = sums["total"] or 0
    if line_sum != invoice.total:
        raise InvoiceTotalsMismatch(
            details={"invoice": invoice.public_id, "total": invoice.total, "lines": line_sum}
        )
    now = clock.now()
    invoice.number = invoice_number_take_locked(customer)
    invoice.status = InvoiceStatus.OPEN
    invoice.finalized_at = now
    invoice.save(update_fields=["number", "status", "finalized_at"])
    if invoice.total == 0:
        invoice_mark_paid_locked(invoice=invoice, subscription=subscription, now=now)
        return
    ledger_post(
        **invoice_finalized_posting(
            customer=customer, invoice=invoice, at=now, discount=-(sums["discount"] or 0)
        )
    )


# The sum of an invoice's DISCOUNT lines (zero or negative).
_DISCOUNT_SUM = Sum("amount", filter=Q(kind=InvoiceLine.Kind.DISCOUNT))


def invoice_discount_total(invoice: Invoice) -> int:
    """What the invoice's DISCOUNT lines take off, as a positive amount."""
    return -(invoice.lines.aggregate(discount=_DISCOUNT_SUM)["discount"] or 0)


def invoices_finalize_locked(
    *, invoices: Sequence[Invoice], customers: Mapping[int, Customer], at: dt.datetime
) -> None:
    """``invoice_finalize_locked`` for many drafts at once, in a fixed number of statements, with
    the same checks: each must be a draft (the transition table) whose total equals the sum of
    its saved lines (one aggregate query). An invoice of zero (discounted in full) is numbered and
    opened but posts nothing; the caller settles it. Per-customer numbering only; the caller
    holds every customer's lock (``customers`` by pk) and saves their ``next_invoice_sequence``."""
    if billing_settings().invoice_numbering != InvoiceNumbering.CUSTOMER:
        raise ValueError("set-wise finalization numbers invoices per customer")
    sums = {
        row["invoice"]: (row["total"], -(row["discount"] or 0))
        for row in InvoiceLine.objects.filter(invoice__in=[invoice.pk for invoice in invoices])
        .values("invoice")
        .annotate(total=Sum("amount"), discount=_DISCOUNT_SUM)
    }
    for invoice in invoices:
        INVOICE.check(current=invoice.status, target=InvoiceStatus.OPEN)
        line_sum = sums.get(invoice.pk, (0, 0))[0]
        if line_sum != invoice.total:
            raise InvoiceTotalsMismatch(
                details={"invoice": invoice.public_id, "total": invoice.total, "lines": line_sum}
            )
        if invoice.total < 0:
            raise ValueError("an invoice total is never negative")
    for invoice in invoices:
        invoice.number = customer_invoice_number_take(customers[invoice.customer_id])
        invoice.status = InvoiceStatus.OPEN
        invoice.finalized_at = at
    # One UPDATE; only the numbers differ from row to row.
    Invoice.objects.filter(pk__in=[invoice.pk for invoice in invoices]).update(
        status=InvoiceStatus.OPEN,
        finalized_at=at,
        number=Case(
            *[When(pk=invoice.pk, then=Value(invoice.number)) for invoice in invoices],
            output_field=CharField(),
        ),
    )
    ledger_post_many(
        [
            invoice_finalized_posting(
                customer=customers[invoice.customer_id],
                invoice=invoice,
                at=at,
                discount=sums[invoice.pk][1],
            )
            for invoice in invoices
            if invoice.total > 0  # a free invoice (all discounted) owes nothing: no posting
        ]
    )


def invoice_number_take_locked(customer: Customer) -> str:
    """The next invoice number; the caller holds the customer's row lock (and so the sequence)."""
    conf = billing_settings()
    if conf.invoice_numbering == InvoiceNumbering.ACCOUNT:
        InvoiceNumberSequence.objects.get_or_create(name="account")
        sequence = InvoiceNumberSequence.objects.select_for_update().get(name="account")
        value = sequence.next_value
        sequence.next_value = value + 1
        sequence.save(update_fields=["next_value"])
        return f"{conf.invoice_number_prefix}-{value:06d}"
    number = customer_invoice_number_take(customer)
    customer.save(update_fields=["next_invoice_sequence"])
    return number


def customer_invoice_number_take(customer: Customer) -> str:
    """The customer's next invoice number (per-customer numbering), taken on the locked row in
    memory: the caller saves ``next_invoice_sequence``."""
    value = customer.next_invoice_sequence
    customer.next_invoice_sequence = value + 1
    return f"{customer.invoice_prefix}-{value:04d}"


def invoice_mark_paid_locked(
    *, invoice: Invoice, subscription: Subscription | None, now: dt.datetime
) -> None:
    """Settle the invoice in full; a subscription waiting on payment becomes active (and is
    confirmed to the customer when this payment is what starts it)."""
    invoice_paid_apply(invoice=invoice, now=now)
    invoice.save(update_fields=INVOICE_PAID_FIELDS)
    invoice_paid_publish(invoice=invoice)
    if subscription is not None and subscription.status in (
        SubscriptionStatus.INCOMPLETE,
        SubscriptionStatus.PAST_DUE,
        SubscriptionStatus.UNPAID,
    ):
        starts = subscription.status == SubscriptionStatus.INCOMPLETE
        subscription_move_locked(subscription=subscription, target=SubscriptionStatus.ACTIVE)
        if starts:
            subscription_confirmation_send(subscription=subscription)


INVOICE_PAID_FIELDS = ["status", "amount_paid", "paid_at", "next_payment_attempt_at"]


def invoice_paid_publish(*, invoice: Invoice) -> None:
    """Publish ``invoice.paid`` in the current transaction (an invoice is paid once)."""
    event_publish(
        event_type="invoice.paid",
        object_type="invoice",
        object_id=invoice.public_id,
        key=invoice.public_id,
    )


def invoice_paid_apply(*, invoice: Invoice, now: dt.datetime) -> None:
    """Mark the invoice paid in full, in memory (the caller saves ``INVOICE_PAID_FIELDS``)."""
    invoice.status = INVOICE.check(current=invoice.status, target=InvoiceStatus.PAID)
    invoice.amount_paid = invoice.total
    invoice.paid_at = now
    invoice.next_payment_attempt_at = None


def invoice_frozen(invoice: Invoice) -> dict[str, object]:
    """The invoice's fields that never change once it is finalized (``Invoice.FROZEN_FIELDS``), as
    they are now: to check a set-wise save against, as ``Invoice.save`` checks one."""
    return {name: getattr(invoice, name) for name in Invoice.FROZEN_FIELDS}


def invoices_paid_save_locked(
    *, invoices: Sequence[Invoice], frozen: Mapping[int, dict[str, object]], at: dt.datetime
) -> None:
    """Save finalized invoices marked paid in full at ``at`` (``invoice_paid_apply``) in one
    statement, refusing, as ``Invoice.save`` does, any whose frozen fields differ from ``frozen``
    (taken when they were locked)."""
    for invoice in invoices:
        changed = [
            name
            for name in Invoice.FROZEN_FIELDS
            if getattr(invoice, name) != frozen[invoice.pk][name]
        ]
        if changed or invoice.status != InvoiceStatus.PAID or invoice.paid_at != at:
            raise InvoiceImmutable(details={"invoice": invoice.public_id, "fields": changed})
    Invoice.objects.filter(pk__in=[invoice.pk for invoice in invoices]).update(
        status=InvoiceStatus.PAID, amount_paid=F("total"), paid_at=at, next_payment_attempt_at=None
    )


def invoice_close_locked(
    *,
    customer: Customer,
    invoice: Invoice,
    target: InvoiceStatus,
    kind: LedgerTransaction.Kind,
    debit: LedgerAccount,
) -> None:
    """Stop collecting an open (or written-off) invoice: what it was owed leaves receivables (or
    bad debt, where a write-off moved it) for ``debit``."""
    posting = invoice_closed_posting(
        customer=customer,
        invoice=invoice,
        kind=kind,
        debit=debit,
        at=clock.now(),
        discount=invoice_discount_total(invoice) if debit == LedgerAccount.REVENUE else 0,
    )
    invoice.status = INVOICE.check(current=invoice.status, target=target)
    invoice.next_payment_attempt_at = None
    invoice.save(update_fields=["status", "next_payment_attempt_at"])
    ledger_post(**posting)


def invoice_void_locked(*, customer: Customer, invoice: Invoice) -> None:
    """Cancel an open or written-off invoice that is no longer owed; its posting to the ledger is
    reversed (from bad debt for a written-off one)."""
    invoice_close_locked(
        customer=customer,
        invoice=invoice,
        target=InvoiceStatus.VOID,
        kind=LedgerTransaction.Kind.INVOICE_VOIDED,
        debit=LedgerAccount.REVENUE,
    )


def invoice_write_off_locked(*, customer: Customer, invoice: Invoice) -> None:
    """Give up collecting an open invoice; what it was owed moves to bad debt."""
    invoice_close_locked(
        customer=customer,
        invoice=invoice,
        target=InvoiceStatus.UNCOLLECTIBLE,
        kind=LedgerTransaction.Kind.INVOICE_WRITTEN_OFF,
        debit=LedgerAccount.BAD_DEBT,
    )


def invoice_write_off_reverse_locked(*, customer: Customer, invoice: Invoice) -> None:
    """A written-off invoice is being paid after all: what it owes moves back from bad debt to
    receivable (reversing the write-off), so the capture then settles it like any other. A
    subscription that ended with it stays ended."""
    ledger_post(**write_off_reversed_posting(customer=customer, invoice=invoice, at=clock.now()))
    audit_record(
        action="billing.invoice_write_off_reversed",
        target=invoice,
        details={"number": invoice.number, "total": invoice.total},
    )


def upgrade_invoice_locked(
    *, locks: SubscriptionLocks, price: Price, now: dt.datetime, seats: int | None = None
) -> Invoice:
    """Move the locked subscription to ``price`` (for ``seats`` seats, by default its own) now and
    finalize the invoice of the change: a credit for the unused time on the old price, a charge for
    the remaining time on the new one and the subscription's discount on that charge
    (``previews.upgrade_proration``: net of what the discount took off)."""
    subscription = locks.subscription
    old, old_seats = subscription.price, subscription.seats
    seats = seats or old_seats
    amounts = previews.upgrade_proration(
        subscription=subscription, price=price, at=now, seats=seats
    )
    prorated, remaining = amounts.proration, amounts.remaining
    subscription.price, subscription.scheduled_price = price, None
    subscription.seats, subscription.scheduled_seats = seats, None
    subscription.save(update_fields=["price", "scheduled_price", "seats", "scheduled_seats"])
    lines = [
        LineSpec(
            kind=InvoiceLine.Kind.PRORATION_CREDIT,
            description=f"Unused time on {old.plan.name}{seats_label(old, old_seats)}",
            amount=-prorated.credit,
            price=old,
            period=remaining,
            seats=old_seats,
        ),
        LineSpec(
            kind=InvoiceLine.Kind.PRORATION_DEBIT,
            description=f"Remaining time on {price.plan.name}{seats_label(price, seats)}",
            amount=prorated.debit,
            price=price,
            period=remaining,
            seats=seats,
        ),
    ]
    return _change_invoice_locked(locks=locks, amounts=amounts, lines=lines)


def seats_invoice_locked(*, locks: SubscriptionLocks, seats: int, now: dt.datetime) -> Invoice:
    """Give the locked subscription (on a per-seat price) ``seats`` seats, more than it has, now,
    and finalize the invoice of the added seats: their price for the remaining time and the
    subscription's discount on it (``previews.seats_proration``)."""
    subscription, price = locks.subscription, locks.subscription.price
    added = seats - subscription.seats
    amounts = previews.seats_proration(subscription=subscription, seats=seats, at=now)
    subscription.seats, subscription.scheduled_seats = seats, None
    subscription.save(update_fields=["seats", "scheduled_seats"])
    more = "1 more seat" if added == 1 else f"{added} more seats"
    line = LineSpec(
        kind=InvoiceLine.Kind.PRORATION_DEBIT,
        description=f"Remaining time on {price.plan.name}: {more} ({seats} in all)",
        amount=amounts.proration.debit,
        price=price,
        period=amounts.remaining,
        seats=seats,
    )
    return _change_invoice_locked(locks=locks, amounts=amounts, lines=[line])


def _change_invoice_locked(
    *, locks: SubscriptionLocks, amounts: previews.UpgradeAmounts, lines: list[LineSpec]
) -> Invoice:
    """Finalize the invoice of a mid-period change: ``lines`` and the discount of ``amounts`` on
    the new price, for the rest of the period (lines of zero left out)."""
    subscription, remaining = locks.subscription, amounts.remaining
    price = subscription.price
    invoice = Invoice.objects.create(
        customer=locks.customer,
        subscription=subscription,
        billing_reason=Invoice.BillingReason.SUBSCRIPTION_UPDATE,
        currency=price.currency,
        period_start=remaining.start,
        period_end=remaining.end,
    )
    if amounts.discount and amounts.coupon is not None:
        lines = [
            *lines,
            discount_line(
                discount=amounts.coupon, amount=amounts.discount, price=price, period=remaining
            ),
        ]
    invoice_lines_add_locked(invoice=invoice, lines=[line for line in lines if line.amount])
    invoice_finalize_locked(customer=locks.customer, subscription=subscription, invoice=invoice)
    return invoice
