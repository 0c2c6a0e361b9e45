"""Provider bounce and complaint reports (anymail's ``tracking`` signal) -> undeliverable addresses.

Connected from ``NotificationsConfig.ready`` when the optional ``anymail`` extra is installed; the
provider's webhook reaches anymail's own view (``tollgate.notifications.urls``), which checks its
basic auth and normalizes the event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from tollgate.core.redaction import scrub_text
from tollgate.notifications.models import SuppressedAddress
from tollgate.notifications.services import address_suppress

log = structlog.get_logger(__name__)

# A rejection says the address is dead only for these reasons (anymail's RejectReason values);
# "blocked" (the provider's policy, often about the content), "unsubscribed" and "other" do not.
HARD_REJECT_REASONS = frozenset({"invalid", "bounced", "timed_out", "spam"})

# Providers whose soft bounces (a full mailbox, a greylisting server) anymail reports as
# "bounced": the raw event tells them apart, and a soft bounce leaves the address alone.
_SOFT_BOUNCES: dict[str, Callable[[Any], bool]] = {
    "Postmark": lambda event: _raw(event, "Type") == "SoftBounce",
    "Brevo": lambda event: _raw(event, "event") == "soft_bounce",
    "SendinBlue": lambda event: _raw(event, "event") == "soft_bounce",
    "Amazon SES": lambda event: str(event.description or "").startswith("Transient"),
}


def _raw(event: Any, key: str) -> Any:
    raw = event.esp_event
    return raw.get(key) if hasattr(raw, "get") else None


def suppression_reason(event: Any, esp_name: str) -> str | None:
    """Why the event's recipient should get no more suppressible email, or None."""
    if event.event_type == "bounced":
        soft = _SOFT_BOUNCES.get(esp_name)
        return None if soft is not None and soft(event) else SuppressedAddress.Reason.BOUNCED
    if event.event_type == "rejected" and event.reject_reason in HARD_REJECT_REASONS:
        return SuppressedAddress.Reason.REJECTED
    if event.event_type == "complained":
        return SuppressedAddress.Reason.COMPLAINED
    return None


def email_tracking_received(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
    """Receiver of anymail's ``tracking`` signal: suppress the recipient of a hard bounce, a hard
    rejection or a complaint. Other events (delivered, opened, deferred...) are ignored."""
    reason = suppression_reason(event, esp_name)
    if reason is None or not event.recipient:
        return
    address_suppress(
        address=str(event.recipient),
        reason=reason,
        esp=esp_name,
        event_id=str(event.event_id or ""),
        description=scrub_text(str(event.description or "")),
    )
