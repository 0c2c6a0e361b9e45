"""Audit records and follow-up emails for account events raised by Django and allauth."""

from __future__ import annotations

from typing import Any

from allauth.account import signals as account_signals
from allauth.mfa import signals as mfa_signals
from allauth.mfa.models import Authenticator
from django.contrib.auth import signals as auth_signals
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest

from tollgate.accounts import services
from tollgate.accounts.middleware import session_mark_started
from tollgate.audit.services import audit_record
from tollgate.core.redaction import mask_email


@receiver(auth_signals.user_logged_in)
def _logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        session_mark_started(request)
    audit_record(action="auth.login", actor=user, target=user)


@receiver(auth_signals.user_login_failed)
def _login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    identifier = str(credentials.get("email") or credentials.get("username") or "")
    audit_record(action="auth.login_failed", details={"email": mask_email(identifier)})


@receiver(auth_signals.user_logged_out)
def _logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None:
        audit_record(action="auth.logout", actor=user, target=user)


@receiver(account_signals.user_signed_up)
def _signed_up(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    audit_record(action="account.signed_up", actor=user, target=user)


@receiver(account_signals.email_confirmed)
def _email_confirmed(sender: Any, request: HttpRequest, email_address: Any, **kwargs: Any) -> None:
    services.account_email_verified(user=email_address.user, email=email_address.email)


@receiver(account_signals.password_changed)
def _password_changed(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    audit_record(action="account.password_changed", actor=user, target=user)


@receiver(account_signals.password_set)
def _password_set(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    audit_record(action="account.password_set", actor=user, target=user)


@receiver(account_signals.password_reset)
def _password_reset(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    audit_record(action="account.password_reset", actor=user, target=user)


@receiver(account_signals.email_changed)
def _email_changed(
    sender: Any,
    request: HttpRequest,
    user: Any,
    from_email_address: Any,
    to_email_address: Any,
    **kwargs: Any,
) -> None:
    if from_email_address is None:
        # allauth also says "changed" when a new account verifies its first address; that is a
        # verification, recorded as account.email_verified.
        return
    audit_record(
        action="account.email_changed",
        actor=user,
        target=user,
        details={
            "from": mask_email(from_email_address.email),
            "to": mask_email(to_email_address.email),
        },
    )


@receiver(account_signals.email_added)
def _email_added(
    sender: Any, request: HttpRequest, user: Any, email_address: Any, **kwargs: Any
) -> None:
    audit_record(
        action="account.email_added",
        actor=user,
        target=user,
        details={"email": mask_email(email_address.email)},
    )


@receiver(account_signals.email_removed)
def _email_removed(
    sender: Any, request: HttpRequest, user: Any, email_address: Any, **kwargs: Any
) -> None:
    audit_record(
        action="account.email_removed",
        actor=user,
        target=user,
        details={"email": mask_email(email_address.email)},
    )


# Authenticator rows are audited from model signals, inside the transaction that changes them
# (allauth's own authenticator_added/removed signals fire only after commit).
@receiver(post_save, sender=Authenticator)
def _mfa_saved(sender: Any, instance: Authenticator, created: bool, **kwargs: Any) -> None:
    if created:
        audit_record(
            action="mfa.added",
            actor=instance.user,
            target=instance.user,
            details={"type": instance.type},
        )


@receiver(post_delete, sender=Authenticator)
def _mfa_deleted(sender: Any, instance: Authenticator, **kwargs: Any) -> None:
    audit_record(
        action="mfa.removed",
        actor=instance.user,
        target=instance.user,
        details={"type": instance.type},
    )


@receiver(mfa_signals.authenticator_reset)
def _mfa_reset(
    sender: Any, request: HttpRequest, user: Any, authenticator: Any, **kwargs: Any
) -> None:
    audit_record(action="mfa.reset", actor=user, target=user, details={"type": authenticator.type})


@receiver(mfa_signals.authentication_failed)
def _mfa_failed(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    audit_record(action="mfa.failed", actor=user, target=user)
