"""Rate-limit bookkeeping driven by Django's and allauth's authentication signals."""

from __future__ import annotations

from typing import Any

from allauth.account import signals as account_signals
from allauth.account.models import EmailAddress
from allauth.mfa import signals as mfa_signals
from django.conf import settings
from django.contrib.auth import signals as auth_signals
from django.dispatch import receiver
from django.http import HttpRequest

from tollgate.security import known_device
from tollgate.security.endpoints import login_failure_bucket
from tollgate.security.ratelimit import email_subject, limiter, user_subject


@receiver(auth_signals.user_login_failed, dispatch_uid="tollgate.security.login_failed")
def _count_login_failure(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    if request is None or not settings.RATELIMIT_ENABLED:
        return
    identifier = str(credentials.get("email") or credentials.get("username") or "")
    bucket = login_failure_bucket(request, identifier)
    if bucket is not None:
        limiter().hit(*bucket)


def _account_buckets(user: Any) -> list[str]:
    """The per-account sign-in buckets of every address ``user`` can sign in with (failures are
    counted by the address typed, which may be a secondary one)."""
    addresses = [
        user.email,
        *EmailAddress.objects.filter(user=user).values_list("email", flat=True),
    ]
    buckets = (email_subject(address or "") for address in addresses)
    return list(dict.fromkeys(bucket for bucket in buckets if bucket is not None))


@receiver(auth_signals.user_logged_in, dispatch_uid="tollgate.security.logged_in")
def _remember_device(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is not None:
        known_device.remember(request, _account_buckets(user))


@receiver(account_signals.password_reset, dispatch_uid="tollgate.security.password_reset")
def _unlock_after_password_reset(
    sender: Any, request: HttpRequest, user: Any, **kwargs: Any
) -> None:
    # Completing a reset proves control of the mailbox, the same proof that lets the owner in, so
    # it also lifts a lock-out an attacker caused by failing sign-ins on purpose.
    for account in _account_buckets(user):
        limiter().clear("login-account", account)


@receiver(mfa_signals.authentication_failed, dispatch_uid="tollgate.security.mfa_failed")
def _count_mfa_failure(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if settings.RATELIMIT_ENABLED and user is not None:
        limiter().hit("mfa-user", user_subject(user.pk))
