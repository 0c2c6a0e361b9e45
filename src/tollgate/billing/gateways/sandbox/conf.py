"""The sandbox gateway's options, gathered in one typed object and read from settings at call time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings

# A hosted card-setup link is good for this long after it was handed out (Stripe's Checkout
# sessions last 24 hours too); after that the customer starts again from Tollgate.
SETUP_SESSION_LIFETIME = dt.timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    # The secret the sandbox signs its events with: the first ``v1`` of every header.
    webhook_secret: str
    # Earlier secrets: events signed with them are still accepted (a rotation in progress).
    webhook_secret_fallbacks: tuple[str, ...]

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        """Every secret an inbound sandbox event may be signed with, the current one first."""
        return (self.webhook_secret, *self.webhook_secret_fallbacks)


def sandbox_settings() -> SandboxSettings:
    return SandboxSettings(
        webhook_secret=settings.SANDBOX_WEBHOOK_SECRET,
        webhook_secret_fallbacks=tuple(settings.SANDBOX_WEBHOOK_SECRET_FALLBACKS),
    )
