"""Signed webhook events, the way Stripe signs them: shared by every gateway that uses the scheme.

The sender puts ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`` in a header, one
``v1`` per secret it signs with (during a rotation Stripe sends several). The receiver accepts the
event when any ``v1`` matches the HMAC under any of its secrets (old and new ones during a rotation),
compares in constant time, and refuses a timestamp older than the tolerance (replays) or too far in
the future (a sender clock that cannot be trusted, or a forged header kept for later).

Pure functions, no database and no settings: an adapter passes its own secrets and clock reading.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Sequence

from tollgate.billing.gateways.base import EventRejected

SCHEME = "v1"
# Stripe's default: an event signed more than five minutes ago is refused as a possible replay.
TOLERANCE = dt.timedelta(seconds=300)
# Clocks drift a little; a timestamp further ahead than this was not made by an honest sender now.
MAX_FUTURE_SKEW = dt.timedelta(seconds=60)
# Real headers are about 80 characters per signature; anything this long is not one.
MAX_HEADER_LENGTH = 2048
MAX_SIGNATURES = 8

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_SIGNATURE = re.compile(r"[0-9a-f]{64}")


def signature_compute(*, payload: bytes, secret: str, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<payload>"`` under ``secret``."""
    message = str(timestamp).encode("ascii") + b"." + payload
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header_build(*, payload: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """The header a sender attaches: ``t=<timestamp>`` and one ``v1`` per secret, in order."""
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    signatures = ",".join(
        f"{SCHEME}={signature_compute(payload=payload, secret=secret, timestamp=timestamp)}"
        for secret in secrets
    )
    return f"t={timestamp},{signatures}"


def signature_verify(
    *,
    payload: bytes,
    header: str,
    secrets: Sequence[str],
    now: dt.datetime,
    tolerance: dt.timedelta = TOLERANCE,
    max_future_skew: dt.timedelta = MAX_FUTURE_SKEW,
) -> dt.datetime:
    """Check ``header`` against the raw ``payload``; the signing time if it is valid.

    Raises :class:`EventRejected` for a missing or malformed header, no signature matching any of
    ``secrets``, or a timestamp outside ``[now - tolerance, now + max_future_skew]``. The signature
    is checked before the time, so the age of a forged event is never reported.
    """
    usable = [secret for secret in secrets if secret]
    if not usable:
        raise EventRejected("no signing secret is configured for this gateway")
    timestamp, signatures = _header_parse(header)
    expected = [
        signature_compute(payload=payload, secret=secret, timestamp=timestamp) for secret in usable
    ]
    # Every pair is compared, whatever matched first: the time taken says nothing about which.
    matched = False
    for candidate in expected:
        for signature in signatures:
            matched |= hmac.compare_digest(candidate, signature)
    if not matched:
        raise EventRejected("signature does not match")
    signed_at = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    if signed_at < now - tolerance:
        raise EventRejected("event is too old: its timestamp is outside the tolerance")
    if signed_at > now + max_future_skew:
        raise EventRejected("event timestamp is in the future")
    return signed_at


def _header_parse(header: str) -> tuple[int, list[str]]:
    if not header or len(header) > MAX_HEADER_LENGTH:
        raise EventRejected("malformed signature header: missing or too long")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        name, separator, value = item.strip().partition("=")
        if not separator:
            raise EventRejected("malformed signature header: expected name=value pairs")
        if name == "t":
            timestamps.append(value)
        elif name == SCHEME:
            signatures.append(value)
        # Other schemes (Stripe's v0 test signatures) are ignored, as Stripe's libraries do.
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]):
        raise EventRejected("malformed signature header: one numeric timestamp t= is required")
    valid = [signature for signature in signatures if _HEX_SIGNATURE.fullmatch(signature)]
    if not valid or len(signatures) > MAX_SIGNATURES:
        raise EventRejected(f"malformed signature header: no usable {SCHEME} signature")
    return int(timestamps[0]), valid
