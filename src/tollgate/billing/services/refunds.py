"""Refund writes: issuing one (staff) and reconciling a pending one with the gateway.

The amount is reserved on the payment under its row lock before the gateway is asked
(``steps.refunds.refund_reserve_locked``), released if the gateway refuses, and posted to the
ledger and emailed when it succeeds."""

from __future__ import annotations

import structlog
from django.db import IntegrityError, transaction

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing.emails import billing_links
from tollgate.billing.errors import PaymentNotCaptured, RefundExceedsCaptured
from tollgate.billing.gateways.base import GatewayUnavailable, RefundRequest, RefundResult
from tollgate.billing.gateways.registry import gateway_get
from tollgate.billing.ledger import ledger_post, refund_succeeded_posting
from tollgate.billing.locks import RefundLocks, lock_payment, lock_refund
from tollgate.billing.models import PaymentAttempt, Refund
from tollgate.billing.states import REFUND, PaymentStatus, RefundStatus
from tollgate.billing.steps.refunds import refund_fingerprint, refund_reserve_locked
from tollgate.core import clock
from tollgate.core.errors import (
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    PermissionDenied,
    ValidationFailed,
)
from tollgate.core.events import event_publish
from tollgate.core.money import Money
from tollgate.notifications.services import email_send_template

log = structlog.get_logger(__name__)


def refund_issue(
    *,
    payment: PaymentAttempt,
    amount: int,
    reason: Refund.Reason,
    note: str,
    actor: User,
    idempotency_key: str,
) -> Refund:
    """Refund ``amount`` of a captured payment: by staff, with a reason, at most once per key.

    The sum of refunds never exceeds the captured amount, even under concurrent requests: the
    amount is reserved on the payment under its row lock (and a check constraint) before the gateway
    is asked, and released if the gateway refuses. The same key with the same request returns the
    first refund; with a different request it is refused (422); while the first is still with the
    gateway it is a conflict (409). A success is posted to the ledger and emailed to the customer.
    """
    if not actor.is_staff:
        raise PermissionDenied("Only staff can issue refunds.")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValidationFailed(
            "Refund a positive whole number of minor units.", details={"field": "amount"}
        )
    if reason not in Refund.Reason.values:
        raise ValidationFailed("Choose a refund reason.", details={"field": "reason"})
    if not note.strip():
        raise ValidationFailed("Say why the refund is given.", details={"field": "note"})
    fingerprint = refund_fingerprint(payment=payment, amount=amount, reason=reason, note=note)
    with transaction.atomic(durable=True):
        locks = lock_payment(payment)
        existing = Refund.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.request_fingerprint != fingerprint:
                raise IdempotencyKeyReused()
            if existing.status == RefundStatus.PENDING:
                raise IdempotencyKeyInProgress()
            return existing
        captured = locks.payment
        if captured.status != PaymentStatus.SUCCEEDED:
            raise PaymentNotCaptured(details={"payment": captured.public_id})
        refundable = captured.amount - captured.amount_refunded
        if amount > refundable:
            raise RefundExceedsCaptured(details={"refundable": refundable, "requested": amount})
        try:
            with transaction.atomic():
                refund = refund_reserve_locked(
                    payment=captured,
                    amount=amount,
                    reason=reason,
                    note=note,
                    actor=actor,
                    idempotency_key=idempotency_key,
                    fingerprint=fingerprint,
                )
        except IntegrityError as exc:
            # The same key, at the same moment, for another payment: the other request won.
            raise IdempotencyKeyInProgress() from exc
    return refund_send(refund=refund, payment=captured, actor=actor)


def refund_reconcile(*, refund: Refund, actor: User | None = None) -> Refund:
    """Ask the gateway what happened to a pending refund and record it. One the gateway never
    received is sent again under the same key (a key is processed at most once)."""
    if refund.status != RefundStatus.PENDING:
        return refund
    payment = refund.payment
    try:
        result = gateway_get(payment.gateway).refund_lookup(idempotency_key=refund.public_id)
    except GatewayUnavailable:
        return refund
    if result is not None:
        return _refund_outcome_record(refund=refund, result=result, actor=actor)
    return refund_send(refund=refund, payment=payment, actor=actor)


def refund_send(*, refund: Refund, payment: PaymentAttempt, actor: User | None) -> Refund:
    """Send a committed pending refund to the gateway and record the outcome; a timeout leaves
    it pending for ``refund_reconcile``."""
    try:
        result = gateway_get(payment.gateway).refund(
            request=RefundRequest(
                charge_reference=payment.gateway_reference,
                amount=refund.amount,
                currency=refund.currency,
                idempotency_key=refund.public_id,
            )
        )
    except GatewayUnavailable:
        log.warning("billing.refund_outcome_unknown", refund=refund.public_id)
        return refund
    return _refund_outcome_record(refund=refund, result=result, actor=actor)


def _refund_outcome_record(*, refund: Refund, result: RefundResult, actor: User | None) -> Refund:
    with transaction.atomic(durable=True):
        locks = lock_refund(refund)
        current = locks.refund
        target = RefundStatus(result.status.value)
        if current.status == target:
            return current
        current.status = REFUND.check(current=current.status, target=target)
        current.gateway_reference = result.reference
        current.failure_code = result.failure_code
        current.completed_at = clock.now()
        current.save(update_fields=["status", "gateway_reference", "failure_code", "completed_at"])
        if target == RefundStatus.SUCCEEDED:
            _refund_succeeded(locks)
        else:
            locks.payment.amount_refunded -= current.amount
            locks.payment.save(update_fields=["amount_refunded"])
        audit_record(
            action=f"billing.refund_{target}",
            actor=actor,
            target=current,
            details={"payment": locks.payment.public_id, "amount": current.amount},
        )
    return current


def _refund_succeeded(locks: RefundLocks) -> None:
    refund = locks.refund
    ledger_post(**refund_succeeded_posting(locks=locks, at=clock.now()))
    event_publish(
        event_type="refund.created",
        object_type="refund",
        object_id=refund.public_id,
        key=refund.public_id,
    )
    email_send_template(
        to=locks.customer.email,
        template="billing_refund_issued",
        context={
            **billing_links(invoice=locks.invoice),
            "invoice_number": locks.invoice.number,
            "amount": Money(refund.amount, refund.currency).format(),
        },
        dedupe_key=f"billing_refund_issued:{refund.public_id}",
    )
