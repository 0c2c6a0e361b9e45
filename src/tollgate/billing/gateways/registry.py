"""Which gateway the engine talks to: chosen by the ``PAYMENT_GATEWAY`` setting at call time."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from tollgate.billing.gateways.base import Gateway
from tollgate.core.money import Money

ADAPTERS = {
    "sandbox": "tollgate.billing.gateways.sandbox.adapter.SandboxGateway",
    "stripe": "tollgate.billing.gateways.stripe.adapter.StripeGateway",
}
# Each gateway's start-up hook: registers its inbound event handlers (``inbound.handlers``).
READY = {
    "sandbox": "tollgate.billing.gateways.sandbox.events.ready",
    "stripe": "tollgate.billing.gateways.stripe.events.ready",
}


def gateway_get(name: str | None = None) -> Gateway:
    """The adapter for ``name`` (default: the configured gateway)."""
    chosen = name or settings.PAYMENT_GATEWAY
    path = ADAPTERS.get(chosen)
    if path is None:
        raise ImproperlyConfigured(
            f"The payment gateway {chosen!r} is not available in this version of Tollgate; "
            f"use one of: {', '.join(sorted(ADAPTERS))}."
        )
    adapter: Gateway = import_string(path)()
    return adapter


def gateway_charges_exactly(money: Money) -> bool:
    """Whether the configured gateway can charge ``money`` without rounding (registered with
    ``core.money`` so that the catalog refuses a price it could not charge)."""
    return gateway_get().can_charge_exactly(amount=money.amount, currency=money.currency)


def gateway_charge_step(currency: str) -> int:
    """The configured gateway's smallest exactly chargeable amount of ``currency``: prorations
    round to multiples of it (``proration.py``)."""
    return gateway_get().charge_step(currency=currency)


def gateways_ready() -> None:
    """Run every gateway's start-up hook (from the billing app's ``AppConfig.ready``)."""
    for path in READY.values():
        import_string(path)()
