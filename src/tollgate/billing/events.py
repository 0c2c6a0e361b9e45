"""What Tollgate does with each inbound gateway event: the handlers the inbox worker runs.

A handler receives a stored, verified :class:`InboundEvent` and calls the billing services. Every
handler is idempotent and independent of delivery order: it treats the event as news that something
changed, asks the gateway for the current state (a charge's outcome by its idempotency key, a setup
session's card) and records that through a service that ignores what it already knows. A duplicate
is then a no-op, and an early or late event converges to the same final state.

A handler that finds the event names something Tollgate does not know yet raises
:class:`EventNotReady`; the inbox keeps the error and tries again later. Event types without a
handler are stored and acknowledged by the inbox, and nothing else happens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from tollgate.billing import services
from tollgate.billing.errors import EventNotReady
from tollgate.billing.gateways.base import SetupStatus
from tollgate.billing.gateways.registry import gateway_get
from tollgate.billing.gateways.stripe.events import HANDLERS as STRIPE_HANDLERS
from tollgate.billing.models import Customer, InboundEvent, PaymentAttempt, PaymentMethod
from tollgate.billing.states import PaymentStatus

log = structlog.get_logger(__name__)

Handler = Callable[[InboundEvent], None]

_SETTLED = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.FAILED})


def charge_settled(event: InboundEvent) -> None:
    """A charge reached its outcome at the gateway (3-D Secure completed, or failed): record the
    outcome the gateway reports now for the payment's idempotency key. A success pays the invoice
    (and activates the subscription, posts to the ledger, sends the receipt); a failure moves
    dunning on, exactly as when the gateway had answered the charge itself."""
    key = event.payload.get("idempotency_key")
    payment = (
        PaymentAttempt.objects.filter(gateway=event.gateway, idempotency_key=key).first()
        if isinstance(key, str) and key
        else None
    )
    if payment is None:
        raise EventNotReady(f"no payment with the charge's idempotency key {key!r}")
    current = services.payment_reconcile(payment=payment)
    if current.status not in _SETTLED:
        raise EventNotReady(f"payment {current.public_id} is still {current.status}")
    reported = gateway_get(event.gateway).charge_lookup(idempotency_key=payment.idempotency_key)
    if reported is not None and reported.status.value != current.status:
        # Settled here one way and at the gateway the other (an attempt closed while the customer
        # was still authenticating): never overwritten, left for reconciliation to report.
        log.error(
            "inbox.payment_outcome_mismatch",
            gateway=event.gateway,
            payment=current.public_id,
            status=current.status,
            gateway_status=reported.status.value,
        )


def setup_session_succeeded(event: InboundEvent) -> None:
    """A card was saved on the gateway's hosted form: attach it to its customer as the default
    card, which also charges the customer's open invoices at once. A card already attached (by an
    earlier delivery, or by the page the customer returned to) is left as it is."""
    reference = event.payload.get("reference")
    if not isinstance(reference, str) or not reference:
        raise EventNotReady("the event names no setup session")
    result = gateway_get(event.gateway).setup_result(session_reference=reference)
    if result.status != SetupStatus.SUCCEEDED or result.card is None:
        # The gateway's current word wins over the event's; there is nothing to attach.
        log.info("inbox.setup_not_succeeded", gateway=event.gateway, status=result.status)
        return
    if PaymentMethod.objects.filter(
        gateway=event.gateway, gateway_token=result.card.token
    ).exists():
        return
    customer = Customer.objects.filter(
        gateway=event.gateway, gateway_reference=result.customer_reference
    ).first()
    if customer is None:
        # The gateway created its customer but Tollgate has not saved the link (yet).
        raise EventNotReady(
            f"no customer is linked to gateway customer {result.customer_reference}"
        )
    services.payment_method_attach(customer=customer, setup_reference=reference)


# Per gateway, the handler of each event type it sends. ``setup_session.failed`` needs nothing:
# the customer is still on the hosted form and can try another card.
HANDLERS: Mapping[str, Mapping[str, Handler]] = {
    "sandbox": {
        "charge.succeeded": charge_settled,
        "charge.failed": charge_settled,
        "setup_session.succeeded": setup_session_succeeded,
    },
    "stripe": STRIPE_HANDLERS,
}


def handler_for(*, gateway: str, event_type: str) -> Handler | None:
    """The handler of ``event_type`` from ``gateway``; None for a type Tollgate does not act on."""
    return HANDLERS.get(gateway, {}).get(event_type)
