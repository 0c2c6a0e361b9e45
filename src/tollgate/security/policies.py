"""The named rate-limit policies: what is counted, per what, and how much is allowed.

Each policy has a default rate in the ``limits`` notation (``10/5minute``: ten per five minutes).
Operators override rates with ``TOLLGATE_RATE_LIMITS`` (``login-ip=20/5minute,api-ip=600/minute``),
parsed once at start-up by ``tollgate.security.conf``; which endpoint uses which policy lives in
``tollgate.security.endpoints``.

This module is imported by the settings, so it reads settings only inside functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from limits import RateLimitItem
from limits.util import parse_many


@dataclass(frozen=True)
class Policy:
    """A named limit. ``message`` tells a refused person what to do next; ``{wait}`` in it becomes
    the time until they may try again ("5 minutes")."""

    name: str
    default_rate: str
    description: str
    message: str = "Too many requests. Try again in {wait}."


_SIGN_IN_AGAIN = "Too many sign-in attempts. Try again in {wait}."
_ACCOUNT_LOCKED = (
    "Too many failed sign-in attempts for this account. Try again in {wait}, or reset your"
    " password to sign in right away."
)

POLICIES: dict[str, Policy] = {
    policy.name: policy
    for policy in (
        Policy(
            "login-ip",
            "10/5minute",
            "Sign-in attempts (every POST) from one address.",
            _SIGN_IN_AGAIN,
        ),
        Policy(
            "login-account",
            "5/15minute",
            "Failed sign-ins for one account, from browsers that have not signed in to it before.",
            _ACCOUNT_LOCKED,
        ),
        Policy(
            "login-device",
            "10/15minute",
            "Failed sign-ins for one account from one browser that signed in to it before.",
            _ACCOUNT_LOCKED,
        ),
        Policy(
            "signup-ip",
            "10/hour",
            "Sign-up attempts from one address.",
            "Too many sign-up attempts from your network. Try again in {wait}.",
        ),
        Policy(
            "password-reset-ip",
            "10/hour",
            "Password-reset requests from one address.",
            "Too many password-reset requests. Try again in {wait}.",
        ),
        Policy(
            "password-reset-email",
            "3/hour",
            "Password-reset emails to one address.",
            "We have already sent several reset emails to this address: check your inbox and spam"
            " folder, or try again in {wait}.",
        ),
        Policy(
            "password-reset-key-ip",
            "10/15minute",
            "New-password submissions behind reset links, from one address.",
        ),
        Policy(
            "mfa-ip", "20/5minute", "Two-factor code submissions from one address.", _SIGN_IN_AGAIN
        ),
        Policy(
            "mfa-user",
            "5/5minute",
            "Wrong two-factor codes for one account.",
            "Too many wrong codes. Try again in {wait} with a fresh code.",
        ),
        Policy("reauthenticate-user", "10/15minute", "Password confirmations by one account."),
        Policy("password-change-user", "10/15minute", "Password changes and sets by one account."),
        Policy(
            "email-user",
            "20/hour",
            "Email address changes and verification mails requested by one account.",
        ),
        Policy("mfa-manage-user", "20/hour", "Two-factor setup changes by one account."),
        Policy("api-ip", "300/minute", "API requests without a valid API key, from one address."),
        Policy(
            "api-read",
            "1200/minute",
            "API reads (customers, subscriptions, invoices, entitlements) by one operator key, or"
            " by one customer's keys when their plan sets no rate.",
            "Too many API requests. Retry in {wait}.",
        ),
        Policy(
            "api-write",
            "300/minute",
            "API writes (customers, links) by one key or customer.",
            "Too many API requests. Retry in {wait}.",
        ),
        Policy(
            "api-usage",
            "1200/minute",
            "Usage reports by one key or customer (each may carry up to 1,000 events).",
            "Too many usage reports. Send more events per request, or retry in {wait}.",
        ),
        Policy(
            "api-check",
            "6000/minute",
            "Entitlement checks by one key or customer.",
            "Too many entitlement checks. Cache answers for a few seconds, or retry in {wait}.",
        ),
    )
}


def parse_rate(rate: str) -> RateLimitItem:
    """The single rate in ``rate`` (``10/5minute``); ValueError if malformed or several are given."""
    items = parse_many(rate)
    if len(items) != 1 or items[0].amount < 1:
        raise ValueError(rate)
    return items[0]


def rate_for(name: str) -> RateLimitItem:
    """The rate in force for policy ``name`` (the operator's override, else the default), with
    the policy name as its storage namespace. KeyError for an unknown policy."""
    rate = settings.RATE_LIMIT_OVERRIDES.get(name, POLICIES[name].default_rate)
    return _namespaced_item(name, rate)


def rate_item(name: str, rate: str) -> RateLimitItem:
    """``rate`` (``600/minute``) counted in policy ``name``'s storage namespace. ValueError if
    malformed."""
    return _namespaced_item(name, rate)


@lru_cache(maxsize=256)
def _namespaced_item(name: str, rate: str) -> RateLimitItem:
    item = parse_rate(rate)
    return type(item)(item.amount, item.multiples, namespace=name)
