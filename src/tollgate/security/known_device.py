"""The "known device" cookie: proof that this browser has signed in to an account before.

Failed sign-ins are limited per account, which would let anyone lock a person out by failing on
purpose. A browser that carries this cookie for the account is counted in a bucket of its own
instead, which an attacker cannot reach without the cookie, so the owner keeps signing in.

The cookie is signed (``django.core.signing`` with its own salt), HttpOnly, SameSite=Lax, Secure and
``__Host-`` prefixed when cookies are secure, and lives for a year from the last sign-in. It holds a
random device id and the opaque bucket names (``ratelimit.email_subject``) of the addresses of
the accounts signed in to, newest first, at most ``MAX_ACCOUNTS``; never an address itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponseBase

SALT = "tollgate.security.known-device"
MAX_AGE_SECONDS = 365 * 24 * 60 * 60
MAX_ACCOUNTS = 20  # bucket names: about 40 bytes each, well within a cookie
_PENDING = "_tollgate_known_device"


@dataclass(frozen=True)
class KnownDevice:
    device_id: str
    accounts: tuple[str, ...]


def cookie_name() -> str:
    # __Host- requires Secure, so the prefix follows the same switch as the session cookie's.
    return "__Host-tollgate_device" if settings.SECURE_COOKIES else "tollgate_device"


def read(request: HttpRequest) -> KnownDevice | None:
    """The device this request's cookie proves, or None if it has none, or one that is forged,
    expired or malformed."""
    raw = request.COOKIES.get(cookie_name())
    if not raw:
        return None
    try:
        data = signing.loads(raw, salt=SALT, max_age=MAX_AGE_SECONDS)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    device_id, accounts = data.get("d"), data.get("a")
    if not isinstance(device_id, str) or not device_id or not isinstance(accounts, list):
        return None
    return KnownDevice(device_id, tuple(a for a in accounts if isinstance(a, str)))


def device_for(request: HttpRequest, account: str) -> str | None:
    """The device id if this request proves a previous sign-in to ``account``, else None."""
    known = read(request)
    if known is None or account not in known.accounts:
        return None
    return known.device_id


def remember(request: HttpRequest, accounts: Iterable[str]) -> None:
    """Marks this browser as known for ``accounts``; the cookie is written by ``attach`` when the
    response leaves (keeping its device id and the accounts it already knew, newest first)."""
    known = getattr(request, _PENDING, None) or read(request)
    device_id = known.device_id if known else secrets.token_urlsafe(16)
    merged = dict.fromkeys([*accounts, *(known.accounts if known else ())])
    setattr(request, _PENDING, KnownDevice(device_id, tuple(merged)[:MAX_ACCOUNTS]))


def attach(request: HttpRequest, response: HttpResponseBase) -> None:
    """Writes the cookie ``remember`` asked for during this request, if it did."""
    known: KnownDevice | None = getattr(request, _PENDING, None)
    if known is None:
        return
    value = signing.dumps(
        {"d": known.device_id, "a": list(known.accounts)}, salt=SALT, compress=True
    )
    response.set_cookie(
        cookie_name(),
        value,
        max_age=MAX_AGE_SECONDS,
        path="/",
        secure=settings.SECURE_COOKIES,
        httponly=True,
        samesite="Lax",
    )
