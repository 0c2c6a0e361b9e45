"""Refund steps: reserving a refund on a locked captured payment, and the refunds of the unused
time of a period that a cancellation gives back. In the caller's transaction on locked rows."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing import periods, proration
from tollgate.billing.models import Invoice, InvoiceLine, PaymentAttempt, Refund, Subscription
from tollgate.billing.states import PaymentStatus


def unused_time_refunds_locked(
    *,
    subscription: Subscription,
    paid: Sequence[Invoice],
    now: dt.datetime,
    actor: User | None,
    charge_step: int,
) -> list[Refund]:
    """Reserve the refunds of the current period's unused time (see ``subscription_cancel``), in
    multiples of the gateway's ``charge_step``."""
    payments = list(
        PaymentAttempt.objects.select_for_update()
        .filter(invoice__in=[invoice.pk for invoice in paid], status=PaymentStatus.SUCCEEDED)
        .order_by("pk")
    )
    remaining = min(
        unused_paid_time(invoices=paid, at=now, charge_step=charge_step),
        sum(payment.amount - payment.amount_refunded for payment in payments),
    )
    reason = Refund.Reason.REQUESTED_BY_CUSTOMER
    note = (
        f"Unused time of the period ending {subscription.current_period_end:%Y-%m-%d %H:%M:%S} UTC "
        f"from {now:%Y-%m-%d %H:%M:%S} UTC, refunded when {subscription.public_id} was canceled."
    )
    refunds = []
    for payment in reversed(payments):
        amount = min(remaining, payment.amount - payment.amount_refunded)
        if amount <= 0:
            continue
        refunds.append(
            refund_reserve_locked(
                payment=payment,
                amount=amount,
                reason=reason,
                note=note,
                actor=actor,
                idempotency_key=f"{subscription.public_id}-cancel-{payment.public_id}",
                fingerprint=refund_fingerprint(
                    payment=payment, amount=amount, reason=reason, note=note
                ),
            )
        )
        remaining -= amount
    return refunds


def unused_paid_time(*, invoices: Sequence[Invoice], at: dt.datetime, charge_step: int = 1) -> int:
    """What the time after ``at`` is worth on ``invoices`` (paid ones of one period), line by line,
    by the rule of ``proration.py``, in the customer's favour and in the gateway's charge steps: a
    charge's unused part rounds up and a credit's remaining part rounds down. So after an upgrade it is the new price's unused time,
    and after an upgrade that was never paid (its invoice is not among these), the old price's."""
    by_pk = {invoice.pk: invoice for invoice in invoices}
    worth = 0
    for line in InvoiceLine.objects.filter(invoice__in=list(by_pk)):
        invoice = by_pk[line.invoice_id]
        start, end = (
            line.period_start or invoice.period_start,
            line.period_end or invoice.period_end,
        )
        if start is None or end is None:
            continue
        period = periods.Period(start=start, end=end)
        if line.amount >= 0:
            worth += proration.split(
                amount=line.amount, period=period, at=at, step=charge_step
            ).unused
        else:
            worth -= proration.remaining_charge(
                amount=-line.amount, period=period, at=at, step=charge_step
            )
    return max(worth, 0)


def refund_reserve_locked(
    *,
    payment: PaymentAttempt,
    amount: int,
    reason: Refund.Reason,
    note: str,
    actor: User | None,
    idempotency_key: str,
    fingerprint: str,
) -> Refund:
    """Reserve ``amount`` on the locked captured payment and record the pending refund, in the
    caller's transaction; the check constraint refuses a reservation above the captured amount."""
    payment.amount_refunded += amount
    payment.save(update_fields=["amount_refunded"])
    refund = Refund.objects.create(
        payment=payment,
        amount=amount,
        currency=payment.currency,
        reason=reason,
        note=note.strip(),
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        actor=actor,
    )
    audit_record(
        action="billing.refund_requested",
        actor=actor,
        target=refund,
        details={"payment": payment.public_id, "amount": amount, "reason": str(reason)},
    )
    return refund


def refund_fingerprint(*, payment: PaymentAttempt, amount: int, reason: str, note: str) -> str:
    """What makes two refund requests "the same request" for an idempotency key."""
    return hashlib.sha256(
        json.dumps([payment.public_id, amount, str(reason), note.strip()]).encode()
    ).hexdigest()
