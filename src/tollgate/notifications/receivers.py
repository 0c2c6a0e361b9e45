"""Account events that concern email delivery."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from tollgate.notifications.models import SuppressedAddress
from tollgate.notifications.services import address_suppression_clear


def email_confirmed_clears_suppression(
    sender: Any, request: HttpRequest | None, email_address: Any, **kwargs: Any
) -> None:
    """Whoever followed the confirmation link receives mail at that address: it is deliverable
    again (a mailbox that bounced was fixed, or the owner took the address back)."""
    address_suppression_clear(
        address=email_address.email,
        cleared_by=SuppressedAddress.ClearedBy.VERIFIED,
        actor=email_address.user,
    )
