"""Cached answers about an account's organisation (which customer's plan it uses), kept by the
apps that read them under keys made here, and dropped after commit whenever the account's
membership changes (an outbox message queued in the transaction of the change)."""

from __future__ import annotations

import secrets
from typing import Any

from django.core.cache import cache

from tollgate.accounts.models import User
from tollgate.core import outbox

OUTBOX_KIND = "organisations.membership_changed"
# What is cached per account: its role, billing's customer of the account, the API's customer
# reference.
PURPOSES = ("role", "customer", "api-ref")
CACHE_SECONDS = 3600


def account_cache_key(public_id: str, purpose: str) -> str:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    return f"organisations:account:{purpose}:{public_id}"


def membership_changed(*, user: User) -> None:
    """Queue, in the current transaction, the dropping of what is cached about ``user``."""
    outbox.outbox_enqueue(
        kind=OUTBOX_KIND,
        payload={"user": user.public_id},
        dedupe_key=f"{OUTBOX_KIND}:{user.public_id}:{secrets.token_hex(8)}",
    )


def membership_cache_forget(payload: dict[str, Any]) -> None:
    """Outbox handler (idempotent)."""
    cache.delete_many([account_cache_key(payload["user"], purpose) for purpose in PURPOSES])
