"""The inbound-event handler registry, and what handlers share.

Each gateway registers, once at start-up, the header that carries its webhook signature and the
handler of each event type it sends (``handlers_register``; the gateways' ``events.ready`` do it,
called from the billing app's ``AppConfig.ready``). The inbox and the webhook view ask the registry
and never name a gateway. An event type without a handler is stored and acknowledged, and nothing
else happens.

A handler receives a stored, verified :class:`InboundEvent` and calls the billing services. Every
handler is idempotent and independent of delivery order: it treats the event as news that something
changed, asks the gateway for the current state and records that through a service that ignores
what it already knows. A handler that finds the event names something Tollgate does not know yet
raises :class:`EventNotReady`; the inbox keeps the error and tries again later.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from tollgate.billing import services
from tollgate.billing.errors import EventNotReady
from tollgate.billing.gateways.base import SetupStatus
from tollgate.billing.gateways.registry import gateway_get
from tollgate.billing.models import Customer, InboundEvent, PaymentMethod

log = structlog.get_logger(__name__)

Handler = Callable[[InboundEvent], None]

_handlers: dict[str, Mapping[str, Handler]] = {}
_signature_headers: dict[str, str] = {}


def handlers_register(
    *, gateway: str, signature_header: str, handlers: Mapping[str, Handler]
) -> None:
    """Register ``gateway``'s webhook signature header and its handler of each event type."""
    _signature_headers[gateway] = signature_header
    _handlers[gateway] = dict(handlers)


def handler_for(*, gateway: str, event_type: str) -> Handler | None:
    """The handler of ``event_type`` from ``gateway``; None for a type Tollgate does not act on."""
    return _handlers.get(gateway, {}).get(event_type)


def signature_header_for(gateway: str) -> str | None:
    """The HTTP header carrying ``gateway``'s signature; None for a gateway without webhooks."""
    return _signature_headers.get(gateway)


def setup_attach(*, gateway: str, setup_reference: str) -> None:
    """A card setup completed on ``gateway``'s hosted form: attach the card to its customer as the
    default card, which also charges the customer's open invoices at once. A card already attached
    (by an earlier delivery, or by the page the customer returned to) is left as it is."""
    result = gateway_get(gateway).setup_result(session_reference=setup_reference)
    if result.status != SetupStatus.SUCCEEDED or result.card is None:
        # The gateway's current word wins over the event's; there is nothing to attach.
        log.info("inbox.setup_not_succeeded", gateway=gateway, status=result.status)
        return
    if PaymentMethod.objects.filter(gateway=gateway, gateway_token=result.card.token).exists():
        return
    customer = Customer.objects.filter(
        gateway=gateway, gateway_reference=result.customer_reference
    ).first()
    if customer is None:
        # The gateway created its customer but Tollgate has not saved the link (yet).
        raise EventNotReady(
            f"no customer is linked to gateway customer {result.customer_reference}"
        )
    services.payment_method_attach(customer=customer, setup_reference=setup_reference)
