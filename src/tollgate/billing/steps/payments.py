"""Payment steps: recording a pending attempt (the claim on the invoice), what a capture or a
failure does, and the customer's email about the outcome, in the caller's transaction on rows it
has locked. Sending to the gateway is not a step: ``services.payments`` does it after commit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Max

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing.emails import billing_links
from tollgate.billing.errors import InvoiceNotPayable, PaymentInProgress, PaymentMethodRequired
from tollgate.billing.gateways.base import ChargeRequest
from tollgate.billing.ledger import ledger_post, payment_captured_posting
from tollgate.billing.locks import InvoiceLocks, PaymentLocks
from tollgate.billing.models import Invoice, PaymentAttempt, PaymentMethod
from tollgate.billing.selectors import payment_method_default
from tollgate.billing.states import PAYMENT, PAYMENT_LIVE, InvoiceStatus, PaymentStatus
from tollgate.billing.steps.dunning import dunning_advance_locked
from tollgate.billing.steps.invoices import (
    invoice_mark_paid_locked,
    invoice_write_off_reverse_locked,
)
from tollgate.core import clock
from tollgate.core.events import event_publish
from tollgate.core.money import Money
from tollgate.notifications.services import email_send_template


@dataclass(frozen=True, slots=True)
class PendingCharge:
    """A payment attempt recorded as pending and committed, and the request to send for it."""

    payment: PaymentAttempt
    request: ChargeRequest


def payment_begin_locked(
    *, locks: InvoiceLocks, gateway_name: str, off_session: bool, actor: User | None
) -> PendingCharge:
    """Record a pending attempt for the locked payable invoice, in the caller's transaction.

    Payable: open, or uncollectible (written off, and paid after all, as Stripe allows). The attempt
    is the claim on the invoice: it clears the scheduled attempt time, and while it is live no other
    attempt can start.
    """
    invoice = locks.invoice
    if invoice.status not in _PAYABLE:
        raise InvoiceNotPayable(details={"invoice": invoice.public_id, "status": invoice.status})
    live = invoice.payments.filter(status__in=sorted(PAYMENT_LIVE)).first()
    if live is not None:
        raise PaymentInProgress(details={"payment": live.public_id, "status": live.status})
    method = payment_method_default(customer=locks.customer)
    if method is None or method.gateway != gateway_name:
        raise PaymentMethodRequired("Add a card to pay this invoice.")
    number = (invoice.payments.aggregate(last=Max("attempt_number"))["last"] or 0) + 1
    payment = payment_attempt_build(
        invoice=invoice,
        number=number,
        method=method,
        gateway_name=gateway_name,
        off_session=off_session,
    )
    payment.save(force_insert=True)
    if invoice.next_payment_attempt_at is not None:
        invoice.next_payment_attempt_at = None
        invoice.save(update_fields=["next_payment_attempt_at"])
    audit_record(
        action="billing.payment_started",
        actor=actor,
        target=payment,
        details={"invoice": invoice.public_id, "attempt": number, "amount": payment.amount},
    )
    return PendingCharge(
        payment=payment, request=charge_request_for(payment=payment, invoice=invoice, method=method)
    )


_PAYABLE = frozenset({InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE})


def payment_attempt_build(
    *,
    invoice: Invoice,
    number: int,
    method: PaymentMethod | None,
    gateway_name: str,
    off_session: bool,
) -> PaymentAttempt:
    """Attempt ``number`` at paying ``invoice`` in full, pending, not saved yet; its gateway
    idempotency key is derived from (invoice, attempt number)."""
    return PaymentAttempt(
        invoice=invoice,
        attempt_number=number,
        idempotency_key=f"{invoice.public_id}-attempt-{number}",
        amount=invoice.total,
        currency=invoice.currency,
        payment_method=method,
        gateway=gateway_name,
        off_session=off_session,
    )


def charge_request_for(
    *, payment: PaymentAttempt, invoice: Invoice, method: PaymentMethod
) -> ChargeRequest:
    """The one request an attempt ever sends: rebuilt identically when it is sent again."""
    return ChargeRequest(
        customer_reference=invoice.customer.gateway_reference,
        payment_method_token=method.gateway_token,
        amount=payment.amount,
        currency=payment.currency,
        idempotency_key=payment.idempotency_key,
        off_session=payment.off_session,
        description=f"Invoice {invoice.number}",
    )


ACTION_EXPIRED = "authentication_expired"


def payment_fail_without_card_locked(*, locks: InvoiceLocks, gateway_name: str) -> PaymentAttempt:
    """Record, in the caller's transaction, that a due charge could not be made for want of a card:
    a failed attempt (soft, ``no_payment_method``) that moves the dunning schedule on."""
    invoice = locks.invoice
    number = (invoice.payments.aggregate(last=Max("attempt_number"))["last"] or 0) + 1
    payment = payment_attempt_build(
        invoice=invoice, number=number, method=None, gateway_name=gateway_name, off_session=True
    )
    payment.save(force_insert=True)
    invoice.next_payment_attempt_at = None  # dunning sets the next one, if any
    invoice.save(update_fields=["next_payment_attempt_at"])
    payment.status = PAYMENT.check(current=payment.status, target=PaymentStatus.FAILED)
    payment.decline_code = "no_payment_method"
    payment.decline_kind = PaymentAttempt.DeclineKind.SOFT
    payment.completed_at = clock.now()
    payment.save(update_fields=["status", "decline_code", "decline_kind", "completed_at"])
    rows = PaymentLocks(
        customer=locks.customer, subscription=locks.subscription, invoice=invoice, payment=payment
    )
    payment_failed_locked(rows)
    audit_record(
        action="billing.payment_failed",
        target=payment,
        details={
            "invoice": invoice.public_id,
            "amount": payment.amount,
            "decline": "no_payment_method",
        },
    )
    payment_notify(rows)
    return payment


def payment_failed_locked(locks: PaymentLocks) -> None:
    """A failed payment: ``invoice.payment_failed`` is published and dunning moves on."""
    event_publish(
        event_type="invoice.payment_failed",
        object_type="invoice",
        object_id=locks.invoice.public_id,
        key=locks.payment.public_id,
    )
    dunning_advance_locked(locks)


def payment_outcome_audit(*, locks: PaymentLocks, actor: User | None) -> dict[str, Any]:
    """The audit event of a payment's recorded outcome (the arguments of ``audit_record``)."""
    payment = locks.payment
    return {
        "action": f"billing.payment_{payment.status}",
        "actor": actor,
        "target": payment,
        "details": {
            "invoice": locks.invoice.public_id,
            "amount": payment.amount,
            "decline": payment.decline_code,
            "decline_kind": payment.decline_kind,
        },
    }


def payment_captured_locked(locks: PaymentLocks) -> None:
    invoice = locks.invoice
    if invoice.status == InvoiceStatus.UNCOLLECTIBLE:
        invoice_write_off_reverse_locked(customer=locks.customer, invoice=invoice)
    invoice_mark_paid_locked(invoice=invoice, subscription=locks.subscription, now=clock.now())
    ledger_post(**payment_captured_posting(locks=locks, at=clock.now()))


_PAYMENT_EMAILS = {
    PaymentStatus.SUCCEEDED: "billing_receipt",
    PaymentStatus.FAILED: "billing_payment_failed",
    PaymentStatus.REQUIRES_ACTION: "billing_payment_action_required",
}


def payment_notify(locks: PaymentLocks, *, written_off: bool = False) -> None:
    """Email the customer the outcome. A failed payment of a written-off invoice says only that it
    can still be paid (its subscription's end was told when it ended)."""
    payment, invoice, subscription = locks.payment, locks.invoice, locks.subscription
    template = _PAYMENT_EMAILS.get(PaymentStatus(payment.status))
    if template is None:
        return
    method = payment.payment_method
    retry_at = invoice.next_payment_attempt_at
    email_send_template(
        to=locks.customer.email,
        template=template,
        context={
            **billing_links(invoice=invoice),
            "invoice_number": invoice.number,
            "amount": Money(payment.amount, payment.currency).format(),
            "card": str(method) if method else "",
            "action_url": payment.action_url,
            "hard_decline": payment.decline_kind == PaymentAttempt.DeclineKind.HARD,
            "action_expired": payment.decline_code == ACTION_EXPIRED,
            "retry_on": f"{retry_at:%B %-d, %Y}" if retry_at else "",
            "subscription_status": subscription.status if subscription and not written_off else "",
        },
        dedupe_key=f"{template}:{payment.public_id}",
    )
