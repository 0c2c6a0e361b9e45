"""What Tollgate does with each sandbox event: the handlers the inbox worker runs for the sandbox.

The sandbox's events say only that something changed; each handler asks the sandbox for the current
state (a charge's outcome by its idempotency key, a setup session's card) and records it through a
service that ignores what it already knows (see ``billing.inbound.handlers``).
"""

from __future__ import annotations

import structlog

from tollgate.billing import services
from tollgate.billing.errors import EventNotReady
from tollgate.billing.gateways.registry import gateway_get
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.billing.inbound.handlers import handlers_register, setup_attach
from tollgate.billing.models import InboundEvent, PaymentAttempt
from tollgate.billing.states import PaymentStatus

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "Sandbox-Signature"
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
    """A card was saved on the sandbox's card form: attach it (``inbound.handlers.setup_attach``)."""
    reference = event.payload.get("reference")
    if not isinstance(reference, str) or not reference:
        raise EventNotReady("the event names no setup session")
    setup_attach(gateway=event.gateway, setup_reference=reference)


def ready() -> None:
    """Register the sandbox's webhook header and handlers. ``setup_session.failed`` needs nothing:
    the customer is still on the card form and can try another card."""
    handlers_register(
        gateway=SandboxGateway.name,
        signature_header=SIGNATURE_HEADER,
        handlers={
            "charge.succeeded": charge_settled,
            "charge.failed": charge_settled,
            "setup_session.succeeded": setup_session_succeeded,
        },
    )
