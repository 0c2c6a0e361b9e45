"""The Stripe gateway's options, gathered in one typed object and read from settings at call time.

``API_VERSION`` is the one place the Stripe API version is pinned: every request sends it, so a
change of the account's default version in the dashboard never changes what Tollgate receives.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import stripe
from django.conf import settings

API_VERSION = "2026-10-28.endive"
# How long one request may take before its outcome counts as unknown (asked about later by key).
REQUEST_TIMEOUT_SECONDS = 20
# The SDK retries a request lost on the network with the same idempotency key: safe to repeat.
NETWORK_RETRIES = 2
# Metadata key carrying Tollgate's idempotency key on payment intents and refunds, so Stripe's own
# records say which attempt or refund each one is (reconciliation matches on it).
KEY_METADATA = "tollgate_idempotency_key"


@dataclass(frozen=True, slots=True)
class StripeSettings:
    secret_key: str
    publishable_key: str
    # Every signing secret an inbound event may carry a valid signature for (rotation).
    webhook_secrets: tuple[str, ...]
    api_base: str
    js_url: str

    @property
    def api_origin(self) -> str:
        parts = urlsplit(self.api_base)
        return f"{parts.scheme}://{parts.netloc}"


def stripe_settings() -> StripeSettings:
    return StripeSettings(
        secret_key=settings.STRIPE_SECRET_KEY,
        publishable_key=settings.STRIPE_PUBLISHABLE_KEY,
        webhook_secrets=tuple(settings.STRIPE_WEBHOOK_SECRETS),
        api_base=settings.STRIPE_API_BASE,
        js_url=settings.STRIPE_JS_URL,
    )


def stripe_client(options: StripeSettings | None = None) -> stripe.StripeClient:
    """A client of the official SDK for the configured account, API version and address."""
    chosen = options or stripe_settings()
    return stripe.StripeClient(
        chosen.secret_key,
        stripe_version=API_VERSION,
        base_addresses={"api": chosen.api_base},
        max_network_retries=NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=REQUEST_TIMEOUT_SECONDS),
    )
