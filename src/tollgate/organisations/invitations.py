"""Invitation tokens: a random secret, signed with a timestamp (so an old or altered link is
refused before any query), of which only the SHA-256 is stored. The token is in the email's link
and nowhere else: never logged, never in an audit event."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.core import signing

from tollgate.core import clock
from tollgate.organisations.errors import InvitationInvalid
from tollgate.organisations.models import Invitation, InvitationStatus

SALT = "tollgate.organisations.invitation"
LIFETIME = dt.timedelta(days=7)
_TOKEN_MAX_LENGTH = 200


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def token_new() -> tuple[str, str]:
    """A new (signed token for the link, hash to store)."""
    secret = secrets.token_urlsafe(32)
    return signing.TimestampSigner(salt=SALT).sign(secret), token_hash(secret)


def token_secret(token: str) -> str:
    """The secret of a well-signed token not older than the lifetime, or InvitationInvalid."""
    if not isinstance(token, str) or len(token) > _TOKEN_MAX_LENGTH or not token.isascii():
        raise InvitationInvalid()
    try:
        return signing.TimestampSigner(salt=SALT).unsign(
            token, max_age=LIFETIME + dt.timedelta(minutes=5)
        )
    except signing.BadSignature as exc:  # SignatureExpired is one
        raise InvitationInvalid() from exc


def invitation_pending_for(token: str) -> Invitation:
    """The pending, unexpired invitation of ``token``, or InvitationInvalid (one query)."""
    found = (
        Invitation.objects.select_related("organisation", "invited_by")
        .filter(token_hash=token_hash(token_secret(token)))
        .first()
    )
    if found is None or not invitation_open(found):
        raise InvitationInvalid()
    return found


def invitation_open(invitation: Invitation) -> bool:
    return invitation.status == InvitationStatus.PENDING and clock.now() < invitation.expires_at
