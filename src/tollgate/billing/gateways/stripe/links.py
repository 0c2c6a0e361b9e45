"""Signed links to Tollgate's own Stripe pages (``web/stripe_views.py``): the card page of a
setup intent and the confirmation page of a payment intent. A link carries the intent's id (and the
return URL), signed with the secret key, so the pages need no table of their own."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core import signing
from django.urls import reverse

SETUP_LINK_SALT = "tollgate.billing.stripe.setup"
ACTION_LINK_SALT = "tollgate.billing.stripe.action"
SETUP_LINK_MAX_AGE = dt.timedelta(hours=24)


def setup_link_token(*, setup_intent: str, return_url: str) -> str:
    return signing.dumps(
        {"setup_intent": setup_intent, "return_url": return_url}, salt=SETUP_LINK_SALT
    )


def setup_link_read(token: str) -> tuple[str, str]:
    """The (setup intent, return URL) behind a card-page link; BadSignature when it is not ours
    or older than a day."""
    data = signing.loads(token, salt=SETUP_LINK_SALT, max_age=SETUP_LINK_MAX_AGE)
    return str(data["setup_intent"]), str(data["return_url"])


def action_link_token(payment_intent: str) -> str:
    return signing.dumps(payment_intent, salt=ACTION_LINK_SALT)


def action_link_read(token: str) -> str:
    """The payment intent behind a confirmation link; BadSignature when it is not ours."""
    return str(signing.loads(token, salt=ACTION_LINK_SALT))


def setup_url(*, setup_intent: str, return_url: str) -> str:
    """The absolute URL of the card page of ``setup_intent``."""
    token = setup_link_token(setup_intent=setup_intent, return_url=return_url)
    return f"{settings.SITE_URL}{reverse('stripe:setup', args=[token])}"


def action_url(payment_intent: str) -> str:
    """The absolute URL of the confirmation page of ``payment_intent``."""
    token = action_link_token(payment_intent)
    return f"{settings.SITE_URL}{reverse('stripe:authenticate', args=[token])}"
