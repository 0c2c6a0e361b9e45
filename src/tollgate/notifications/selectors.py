"""Reads about email delivery: whether an address is marked undeliverable."""

from __future__ import annotations

import hashlib
from email.utils import parseaddr

from tollgate.notifications.models import SuppressedAddress


def address_normalize(address: str) -> str:
    """The bare, lower-cased address of ``address`` (``"Ada <Ada@Example.org>"`` -> ``ada@example.org``)."""
    return parseaddr(address)[1].strip().lower()


def address_hash(normalized: str) -> str:
    """How a suppressed address is stored and found (see ``SuppressedAddress``)."""
    return hashlib.sha256(normalized.encode()).hexdigest()


def address_is_suppressed(*, address: str) -> bool:
    """Whether suppressible email to ``address`` is held back (one indexed query)."""
    normalized = address_normalize(address)
    if not normalized:
        return False
    return SuppressedAddress.objects.filter(
        address_hash=address_hash(normalized), cleared_at__isnull=True
    ).exists()
