"""Seats: how many seats a subscription on a per-seat price pays for (see ``billing.seats``)."""

from __future__ import annotations

from django.db import transaction

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing.errors import SeatsBelowMembers, TransitionRefused
from tollgate.billing.locks import lock_subscription
from tollgate.billing.models import Subscription
from tollgate.billing.seats import members_count, seats_checked
from tollgate.billing.services.payments import invoice_charge
from tollgate.billing.states import SUBSCRIPTION_CHANGEABLE, InvoiceStatus, SubscriptionStatus
from tollgate.billing.steps.invoices import seats_invoice_locked
from tollgate.billing.steps.subscriptions import (
    subscription_event_publish,
    subscription_period_open_check,
)
from tollgate.core import clock
from tollgate.core.errors import ValidationFailed
from tollgate.core.idempotency import IdempotencyClaim, PublicIdResult, idempotent

_SUBSCRIPTION_RESULT = PublicIdResult(Subscription)


def subscription_seats_change(
    *,
    subscription: Subscription,
    seats: int,
    actor: User | None = None,
    idempotency_key: str,
    off_session: bool = False,
) -> Subscription:
    """Make a subscription on a per-seat price pay for ``seats`` seats (1 to ``SEATS_MAX``), never
    fewer than its organisation's members (``SeatsBelowMembers``).

    - More seats take effect now: the added seats' price for the rest of the period, prorated to
      the second and net of the subscription's discount (``previews.seats_proration``), is
      invoiced and charged on session; if that payment fails the seats stay and the invoice is
      retried like a renewal. A decrease scheduled for the period end is dropped.
    - Fewer seats take effect at the end of the period (``scheduled_seats``), like a downgrade:
      the period is paid. Asking for the seats it has drops a scheduled decrease.
    - During a trial either takes effect now and nothing is charged.

    Done once per ``idempotency_key`` of the customer (see ``subscription_start``). The charge is
    ``off_session`` when the customer is not there to confirm it (the operator's API).
    """
    seats_checked(seats)
    return idempotent(
        scope=subscription.customer.public_id,
        key=idempotency_key,
        operation="subscription_seats_change",
        parameters={"subscription": subscription.public_id, "seats": seats},
        result=_SUBSCRIPTION_RESULT,
        work=lambda claim: _subscription_seats_change(
            subscription=subscription,
            seats=seats,
            actor=actor,
            claim=claim,
            off_session=off_session,
        ),
    )


def _subscription_seats_change(
    *,
    subscription: Subscription,
    seats: int,
    actor: User | None,
    claim: IdempotencyClaim,
    off_session: bool,
) -> Subscription:
    now = clock.now()
    with transaction.atomic(durable=True):
        locks = lock_subscription(subscription)
        current = locks.subscription
        if not current.price.per_seat:
            raise ValidationFailed("This plan is not priced per seat.", details={"field": "seats"})
        if current.status not in SUBSCRIPTION_CHANGEABLE:
            raise TransitionRefused(
                f"A {current.status} subscription cannot change its seats; pay or restart it "
                "first.",
                details={"object": "subscription", "from": current.status},
            )
        subscription_period_open_check(subscription=current, now=now)
        members = members_count(locks.customer)
        if seats < members:
            raise SeatsBelowMembers(details={"members": members, "field": "seats"})
        before = (current.seats, current.scheduled_seats)
        invoice = None
        if current.status == SubscriptionStatus.TRIALING or seats == current.seats:
            current.seats, current.scheduled_seats = seats, None
            when = "now"
        elif seats > current.seats:
            invoice = seats_invoice_locked(locks=locks, seats=seats, now=now)
            when = "now"
        else:
            current.scheduled_seats = seats
            when = "period_end"
        if (current.seats, current.scheduled_seats) == before:
            claim.checkpoint(_SUBSCRIPTION_RESULT.dump(current))
            return current
        current.save(update_fields=["seats", "scheduled_seats"])
        subscription_event_publish(subscription=current, event_type="subscription.updated")
        claim.checkpoint(_SUBSCRIPTION_RESULT.dump(current))
        audit_record(
            action="billing.subscription_seats_changed",
            actor=actor,
            target=current,
            details={
                "from": before[0],
                "to": seats,
                "when": when,
                "invoice": invoice.public_id if invoice is not None else None,
            },
        )
    if invoice is not None and invoice.status == InvoiceStatus.OPEN:
        invoice_charge(invoice=invoice, off_session=off_session, actor=actor)
        current.refresh_from_db()
    return current
