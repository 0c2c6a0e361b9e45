"""What the payment and billing settings derive from their variables (pure: ``settings.py`` reads
the environment and hands the values in).

- Stripe's origins join the Content-Security-Policy while Stripe is the gateway;
- the sandbox's webhook secret is derived from ``SECRET_KEY`` unless one is given;
- the dunning retry days must be increasing whole days.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

_SANDBOX_SECRET_CONTEXT = b"tollgate.billing.sandbox.webhook-secret"


def stripe_csp_add(csp_extra: dict[str, list[str]], *, js_url: str, api_base: str) -> None:
    """Allow Stripe.js (script and frame) and Stripe's API (connect) in ``csp_extra``, once each."""
    for directive, url in (
        ("script-src", js_url),
        ("frame-src", js_url),
        ("connect-src", api_base),
    ):
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
        sources = csp_extra.setdefault(directive, [])
        if origin not in sources:
            sources.append(origin)
    if urlsplit(js_url).netloc == "js.stripe.com":
        # Stripe.js opens the bank's 3-D Secure page in a frame served from hooks.stripe.com.
        csp_extra.setdefault("frame-src", []).append("https://hooks.stripe.com")


def _sandbox_webhook_secret(key: str) -> str:
    return "whsec_" + hmac.new(key.encode(), _SANDBOX_SECRET_CONTEXT, hashlib.sha256).hexdigest()


def sandbox_webhook_secrets(
    *, secret: str, fallbacks: list[str], secret_key: str, secret_key_fallbacks: list[str]
) -> tuple[str, list[str], list[str]]:
    """The sandbox's webhook secret and its fallbacks, and the problems with them. Unset, both are
    derived from ``SECRET_KEY`` and its fallbacks, so every installation has its own secret and
    none is written in the code."""
    if secret:
        problems = (
            ["TOLLGATE_SANDBOX_WEBHOOK_SECRET must be at least 32 characters."]
            if len(secret) < 32
            else []
        )
        return secret, fallbacks, problems
    derived = fallbacks or [_sandbox_webhook_secret(key) for key in secret_key_fallbacks]
    return _sandbox_webhook_secret(secret_key), derived, []


def dunning_retry_days(values: list[str]) -> tuple[list[int], list[str]]:
    """The retry days of ``TOLLGATE_DUNNING_RETRY_DAYS`` and the problems with them."""
    days = [int(day) for day in values if day.isdigit()]
    increasing = sorted(set(days) - {0})
    if len(values) != len(increasing) or increasing != days:
        return days, ["TOLLGATE_DUNNING_RETRY_DAYS must list increasing whole days, like 1,3,5,7."]
    return days, []
