"""Which policies guard which endpoint, and whose requests each one counts.

Endpoints are named by URL name (allauth's names), and only their POSTs are limited: that is where
passwords, codes and emails are submitted. Two kinds of check exist:

- counted: every POST uses one unit of the policy (per-IP and per-user limits);
- failure-only: the POST is refused once failures have used the quota up, but only failures count
  (``tollgate.security.receivers`` counts them from allauth's and Django's signals). Per-account
  sign-in limits work this way, so a person who types the right password is never counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from allauth.account.internal.stagekit import unstash_login
from django.http import HttpRequest

from tollgate.security import known_device
from tollgate.security.client_ip import client_ip
from tollgate.security.ratelimit import email_subject, ip_subject, user_subject

API_PATH_PREFIX = "/api/"
API_POLICY = "api-ip"


@dataclass(frozen=True)
class Check:
    policy: str
    subject: str
    counted: bool
    """True: this request uses one unit. False: refused only when failures used the quota up."""


def sends_api_key(request: HttpRequest) -> bool:
    return request.META.get("HTTP_AUTHORIZATION", "")[:7].lower() == "bearer "


def ip_of(request: HttpRequest) -> str:
    return ip_subject(client_ip(request))


def _user_or_ip(request: HttpRequest) -> str:
    # Anonymous requests to a signed-in-only endpoint are redirected by the view; counting them by
    # address keeps them from being free.
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user_subject(user.pk)
    return ip_of(request)


def login_failure_bucket(request: HttpRequest, identifier: str) -> tuple[str, str] | None:
    """Where a failed sign-in as ``identifier`` from this request is counted: the account's own
    bucket, or (for a browser that signed in to this account before) that device's bucket."""
    account = email_subject(identifier)
    if account is None:
        return None
    device = known_device.device_for(request, account)
    if device is not None:
        return "login-device", f"{account}/device:{device}"
    return "login-account", account


def _login(request: HttpRequest) -> list[Check]:
    checks = [Check("login-ip", ip_of(request), counted=True)]
    bucket = login_failure_bucket(request, request.POST.get("login", ""))
    if bucket is not None:
        checks.append(Check(*bucket, counted=False))
    return checks


def _password_reset(request: HttpRequest) -> list[Check]:
    checks = [Check("password-reset-ip", ip_of(request), counted=True)]
    email = email_subject(request.POST.get("email", ""))
    if email is not None:
        checks.append(Check("password-reset-email", email, counted=True))
    return checks


def _mfa_authenticate(request: HttpRequest) -> list[Check]:
    checks = [Check("mfa-ip", ip_of(request), counted=True)]
    # The person being asked for a code is not signed in yet: allauth keeps them in the session's
    # pending login. Peeking leaves that state as the view will find it.
    pending = unstash_login(request, peek=True)
    if pending is not None and pending.user is not None:
        checks.append(Check("mfa-user", user_subject(pending.user.pk), counted=False))
    return checks


def _mfa_reauthenticate(request: HttpRequest) -> list[Check]:
    return [
        Check("mfa-ip", ip_of(request), counted=True),
        Check("mfa-user", _user_or_ip(request), counted=False),
    ]


def _per_ip(policy: str) -> Callable[[HttpRequest], list[Check]]:
    return lambda request: [Check(policy, ip_of(request), counted=True)]


def _per_user(policy: str) -> Callable[[HttpRequest], list[Check]]:
    return lambda request: [Check(policy, _user_or_ip(request), counted=True)]


ENDPOINT_CHECKS: dict[str, Callable[[HttpRequest], list[Check]]] = {
    "account_login": _login,
    "account_signup": _per_ip("signup-ip"),
    "account_reset_password": _password_reset,
    "account_reset_password_from_key": _per_ip("password-reset-key-ip"),
    "mfa_authenticate": _mfa_authenticate,
    "mfa_reauthenticate": _mfa_reauthenticate,
    "account_reauthenticate": _per_user("reauthenticate-user"),
    "web:account_delete": _per_user("reauthenticate-user"),
    "web:organisation_transfer": _per_user("reauthenticate-user"),
    "account_change_password": _per_user("password-change-user"),
    "account_set_password": _per_user("password-change-user"),
    "account_email": _per_user("email-user"),
    "mfa_activate_totp": _per_user("mfa-manage-user"),
    "mfa_deactivate_totp": _per_user("mfa-manage-user"),
    "mfa_generate_recovery_codes": _per_user("mfa-manage-user"),
}
"""POST checks by URL name, run in order; the first exhausted policy refuses the request."""


def checks_for(request: HttpRequest) -> list[Check]:
    """The checks guarding this (resolved) request; empty when none apply."""
    if request.method != "POST":
        return []
    match = request.resolver_match
    checks = ENDPOINT_CHECKS.get(match.view_name) if match is not None else None
    return checks(request) if checks is not None else []
