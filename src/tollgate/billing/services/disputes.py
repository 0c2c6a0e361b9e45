"""Disputes (chargebacks): recorded from the gateway's events, flagged to staff, audited.

A dispute moves money at the bank, not through Tollgate: Tollgate records it so staff see it (the
admin lists disputes needing attention first) and respond with evidence on the gateway's dashboard
before ``evidence_due_by``. Services here are keyword-only, one transaction each, audited.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import structlog
from django.db import IntegrityError, transaction

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing.locks import lock_payment
from tollgate.billing.models import Dispute, PaymentAttempt
from tollgate.core import clock

log = structlog.get_logger(__name__)

CLOSED = frozenset({Dispute.Status.WON, Dispute.Status.LOST, Dispute.Status.WARNING_CLOSED})
# How far along each status is: a status only ever moves forward, so events may arrive in any order.
_PROGRESS = {
    Dispute.Status.WARNING_NEEDS_RESPONSE: 0,
    Dispute.Status.NEEDS_RESPONSE: 0,
    Dispute.Status.WARNING_UNDER_REVIEW: 1,
    Dispute.Status.UNDER_REVIEW: 1,
    Dispute.Status.WARNING_CLOSED: 2,
    Dispute.Status.WON: 2,
    Dispute.Status.LOST: 2,
}


@dataclass(frozen=True, slots=True)
class DisputeReport:
    """A dispute as the gateway describes it."""

    gateway: str
    reference: str
    payment_reference: str
    amount: int
    currency: str
    reason: str
    status: str
    evidence_due_by: dt.datetime | None = None


def dispute_record(*, report: DisputeReport) -> Dispute:
    """Record what the gateway says about a dispute: created once per gateway dispute, then moved
    forward only (a late or repeated event changes nothing), audited, and flagged to staff when it
    opens and again when it closes. The payment is the captured attempt with the gateway reference
    the dispute names (none if Tollgate does not know it: the dispute is still recorded)."""
    status = Dispute.Status(report.status)
    payment = PaymentAttempt.objects.filter(
        gateway=report.gateway, gateway_reference=report.payment_reference
    ).first()
    with transaction.atomic(durable=True):
        if payment is not None:
            lock_payment(payment)
        dispute = (
            Dispute.objects.select_for_update()
            .filter(gateway=report.gateway, gateway_reference=report.reference)
            .first()
        )
        if dispute is None:
            try:
                with transaction.atomic():
                    dispute = Dispute.objects.create(
                        gateway=report.gateway,
                        gateway_reference=report.reference,
                        payment=payment,
                        amount=report.amount,
                        currency=report.currency.upper(),
                        reason=report.reason[:64],
                        status=status,
                        evidence_due_by=report.evidence_due_by,
                        closed_at=clock.now() if status in CLOSED else None,
                    )
            except IntegrityError:
                # Recorded by a concurrent delivery of another event about it: move that one on.
                dispute = Dispute.objects.select_for_update().get(
                    gateway=report.gateway, gateway_reference=report.reference
                )
            else:
                _audit(dispute, action="billing.dispute_opened")
                return dispute
        if _PROGRESS[status] <= _PROGRESS[Dispute.Status(dispute.status)] and not (
            status in CLOSED and dispute.status not in CLOSED
        ):
            return dispute
        dispute.status = status
        dispute.needs_attention = True
        if report.evidence_due_by is not None:
            dispute.evidence_due_by = report.evidence_due_by
        if status in CLOSED:
            dispute.closed_at = clock.now()
        dispute.save(update_fields=["status", "needs_attention", "evidence_due_by", "closed_at"])
        _audit(dispute, action="billing.dispute_updated")
    return dispute


def dispute_acknowledge(*, dispute: Dispute, actor: User) -> Dispute:
    """A staff member has looked at the dispute: it no longer needs attention (until it changes)."""
    with transaction.atomic(durable=True):
        current = Dispute.objects.select_for_update().get(pk=dispute.pk)
        if current.needs_attention:
            current.needs_attention = False
            current.save(update_fields=["needs_attention"])
            audit_record(action="billing.dispute_acknowledged", actor=actor, target=current)
    return current


def _audit(dispute: Dispute, *, action: str) -> None:
    audit_record(
        action=action,
        target=dispute,
        details={
            "gateway": dispute.gateway,
            "payment": dispute.payment.public_id if dispute.payment else "",
            "amount": dispute.amount,
            "currency": dispute.currency,
            "reason": dispute.reason,
            "status": dispute.status,
        },
    )
    # Staff watch error-level events (alerts); a dispute has a deadline for evidence.
    log.error(
        "billing.dispute_needs_attention",
        dispute=dispute.public_id,
        status=dispute.status,
        evidence_due_by=dispute.evidence_due_by.isoformat() if dispute.evidence_due_by else "",
    )
