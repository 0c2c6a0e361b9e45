from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest

from tollgate.billing.models import Subscription
from tollgate.billing.selectors import account_payment_overdue
from tollgate.billing.states import SUBSCRIPTION_PAYMENT_OVERDUE


def branding(request: HttpRequest) -> dict[str, Any]:
    return {
        "brand": settings.TOLLGATE_BRAND,
        "test_mode": settings.PAYMENT_GATEWAY == "sandbox",
        "csp_nonce": getattr(request, "csp_nonce", ""),
    }


def billing_alerts(request: HttpRequest) -> dict[str, Any]:
    """``payment_overdue`` for the past-due banner of every page. Lazy: a template calls it only
    for a signed-in account (one query); anonymous pages never ask."""
    cached: list[bool] = []

    def payment_overdue() -> bool:
        if not cached:
            user = getattr(request, "user", None)
            cached.append(
                bool(user is not None and user.is_authenticated)
                and account_payment_overdue(user_id=user.pk)  # type: ignore[union-attr]
            )
        return cached[0]

    return {"payment_overdue": payment_overdue}


def payment_overdue_of(subscription: Subscription | None) -> bool:
    """The past-due banner's answer for a view that has loaded the account's current subscription
    already (a view passes it as ``payment_overdue`` and saves the banner's query): an account has
    at most one subscription that has not ended, and only that one can be past due or unpaid."""
    return subscription is not None and subscription.status in SUBSCRIPTION_PAYMENT_OVERDUE


def integration_return(request: HttpRequest) -> dict[str, Any]:
    """Where the operator's product wants its customer back (``back``: leave the billing pages;
    ``success``: after a checkout), for a customer who came through a checkout or portal link."""

    def addresses() -> dict[str, str]:  # lazy: only the billing pages ask
        session = getattr(request, "session", None)
        stored = session.get("integrations_return") if session is not None else None
        if not isinstance(stored, dict):
            return {}
        back, success = stored.get("back") or "", stored.get("success") or ""
        return {
            "back": back,
            "success": success,
            "back_host": urlsplit(back).hostname or "",
            "success_host": urlsplit(success).hostname or "",
        }

    return {"integration_return": addresses}
