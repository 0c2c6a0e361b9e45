"""What Tollgate does with each Stripe event: the handlers the inbox worker runs for Stripe.

Like the sandbox's (``gateways/sandbox/events.py``), every handler treats an event as news that an object
changed and acts on the object as Stripe has it *now* (fetched by id), through services that ignore
what they already know: a duplicate is a no-op, and events arriving early, late or in any order
converge to the same final state. Disputes carry their state in the event and only move forward.
An event naming something Tollgate does not know yet raises ``EventNotReady`` (retried later);
objects Tollgate never made (no key in their metadata) are acknowledged and left alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import structlog

from tollgate.billing import services
from tollgate.billing.errors import EventNotReady
from tollgate.billing.gateways.stripe.adapter import StripeGateway
from tollgate.billing.gateways.stripe.conf import KEY_METADATA
from tollgate.billing.gateways.stripe.currencies import tollgate_amount
from tollgate.billing.gateways.stripe.objects import saved_card, stripe_field
from tollgate.billing.inbound.handlers import Handler, handlers_register, setup_attach
from tollgate.billing.models import Customer, InboundEvent, PaymentAttempt, PaymentMethod, Refund
from tollgate.billing.services import disputes
from tollgate.billing.states import PaymentStatus, RefundStatus

log = structlog.get_logger(__name__)

GATEWAY = StripeGateway.name
_NOT_ANSWERED = frozenset({PaymentStatus.PENDING, PaymentStatus.UNKNOWN})
_AWAITING = _NOT_ANSWERED | {PaymentStatus.REQUIRES_ACTION}


def _not_ready(message: str) -> Exception:
    return EventNotReady(message)


def _object(event: InboundEvent) -> Mapping[str, Any]:
    obj = event.payload.get("object")
    return obj if isinstance(obj, dict) else {}


def _id(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else ""


# --- Card setup ---------------------------------------------------------------------------------------
def setup_intent_succeeded(event: InboundEvent) -> None:
    """A card was saved with a SetupIntent: attach it to its customer as the default card (which
    also charges what is open), unless it is attached already."""
    setup_intent = _id(_object(event).get("id"))
    if not setup_intent:
        raise _not_ready("the event names no setup intent")
    setup_attach(gateway=GATEWAY, setup_reference=setup_intent)


def checkout_session_completed(event: InboundEvent) -> None:
    """A Checkout session in setup mode completed: the same as its SetupIntent succeeding."""
    session = _object(event)
    setup_intent = _id(session.get("setup_intent"))
    if session.get("mode") != "setup" or not setup_intent:
        log.info("stripe.checkout_session_ignored", mode=session.get("mode"))
        return
    setup_attach(gateway=GATEWAY, setup_reference=setup_intent)


# --- Payments -----------------------------------------------------------------------------------------
def payment_intent_changed(event: InboundEvent) -> None:
    """A payment intent succeeded, failed, needs authentication or is processing: record the
    outcome Stripe reports now for the attempt it belongs to (by the key in its metadata)."""
    intent = _object(event)
    key = (intent.get("metadata") or {}).get(KEY_METADATA)
    if not isinstance(key, str) or not key:
        log.info("stripe.payment_intent_not_ours", event_type=event.type)
        return
    payment = PaymentAttempt.objects.filter(gateway=GATEWAY, idempotency_key=key).first()
    if payment is None:
        raise _not_ready(f"no payment with the idempotency key {key!r}")
    current = services.payment_reconcile(payment=payment)
    if event.type == "payment_intent.succeeded":
        # A succeeded intent never changes back: a payment still waiting here means Stripe could
        # not be asked just now. One Tollgate closed meanwhile is left for reconciliation to report.
        if current.status in _AWAITING:
            raise _not_ready(f"payment {current.public_id} is still {current.status}")
        if current.status != PaymentStatus.SUCCEEDED:
            log.error("stripe.payment_outcome_mismatch", payment=current.public_id)
    elif event.type == "payment_intent.payment_failed" and current.status in _NOT_ANSWERED:
        # (A failure for want of authentication leaves it awaiting the customer: that is settled.)
        raise _not_ready(f"payment {current.public_id} is still {current.status}")


# --- Refunds ------------------------------------------------------------------------------------------
def charge_refunded(event: InboundEvent) -> None:
    """A charge was refunded (in part): settle every refund of its payment still pending here."""
    charge = _object(event)
    intent = _id(charge.get("payment_intent"))
    payment = (
        PaymentAttempt.objects.filter(gateway=GATEWAY, gateway_reference=intent).first()
        if intent
        else None
    )
    if payment is None:
        log.info("stripe.refunded_charge_not_ours")
        return
    for refund in Refund.objects.filter(payment=payment, status=RefundStatus.PENDING):
        services.refund_reconcile(refund=refund)


def refund_changed(event: InboundEvent) -> None:
    """A refund was created or changed state: settle Tollgate's refund with its key."""
    refund_object = _object(event)
    key = (refund_object.get("metadata") or {}).get(KEY_METADATA)
    if not isinstance(key, str) or not key:
        log.info("stripe.refund_not_ours")
        return
    refund = Refund.objects.filter(public_id=key, payment__gateway=GATEWAY).first()
    if refund is None:
        raise _not_ready(f"no refund {key!r}")
    services.refund_reconcile(refund=refund)


# --- Disputes -----------------------------------------------------------------------------------------
def dispute_changed(event: InboundEvent) -> None:
    """A dispute was opened, changed or closed: record it and flag it to staff."""
    dispute = _object(event)
    reference = _id(dispute.get("id"))
    status = dispute.get("status")
    if not reference or status not in {choice.value for choice in disputes.Dispute.Status}:
        raise ValueError(f"unusable dispute in event {event.event_id}")
    due = (dispute.get("evidence_details") or {}).get("due_by")
    currency = str(dispute.get("currency") or "usd")
    disputes.dispute_record(
        report=disputes.DisputeReport(
            gateway=GATEWAY,
            reference=reference,
            payment_reference=_id(dispute.get("payment_intent")),
            amount=tollgate_amount(amount=int(dispute.get("amount") or 0), currency=currency),
            currency=currency,
            reason=str(dispute.get("reason") or ""),
            status=str(status),
            evidence_due_by=dt.datetime.fromtimestamp(int(due), tz=dt.UTC) if due else None,
        )
    )


# --- Cards and customers --------------------------------------------------------------------------------
def payment_method_changed(event: InboundEvent) -> None:
    """A saved card changed (new expiry from the bank) or was detached at Stripe: keep Tollgate's
    copy as Stripe has it now."""
    token = _id(_object(event).get("id"))
    method = PaymentMethod.objects.filter(gateway=GATEWAY, gateway_token=token).first()
    if method is None:
        log.info("stripe.payment_method_not_ours", event_type=event.type)
        return
    current = StripeGateway().payment_method_get(token=token)
    card = saved_card(current)
    method = services.payment_method_card_update(
        payment_method=method,
        brand=card.brand,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
    )
    if not _id(stripe_field(current, "customer")) and method.detached_at is None:
        services.payment_method_detach(payment_method=method)


def customer_deleted(event: InboundEvent) -> None:
    """The Stripe customer was deleted (and its cards with it): Tollgate forgets the link."""
    reference = _id(_object(event).get("id"))
    customer = Customer.objects.filter(gateway=GATEWAY, gateway_reference=reference).first()
    if customer is None:
        return
    services.customer_gateway_forget(customer=customer, gateway=GATEWAY, reference=reference)


HANDLERS: Mapping[str, Handler] = {
    "setup_intent.succeeded": setup_intent_succeeded,
    "checkout.session.completed": checkout_session_completed,
    "payment_intent.succeeded": payment_intent_changed,
    "payment_intent.payment_failed": payment_intent_changed,
    "payment_intent.requires_action": payment_intent_changed,
    "payment_intent.processing": payment_intent_changed,
    "charge.refunded": charge_refunded,
    "refund.created": refund_changed,
    "refund.updated": refund_changed,
    "refund.failed": refund_changed,
    "charge.refund.updated": refund_changed,
    "charge.dispute.created": dispute_changed,
    "charge.dispute.updated": dispute_changed,
    "charge.dispute.closed": dispute_changed,
    "payment_method.updated": payment_method_changed,
    "payment_method.automatically_updated": payment_method_changed,
    "payment_method.detached": payment_method_changed,
    "customer.deleted": customer_deleted,
}


def ready() -> None:
    """Register Stripe's webhook header and handlers (``inbound.handlers``)."""
    handlers_register(gateway=GATEWAY, signature_header="Stripe-Signature", handlers=HANDLERS)
