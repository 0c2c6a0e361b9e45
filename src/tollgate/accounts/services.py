from __future__ import annotations

import secrets

from allauth.account.models import EmailAddress
from django.db import transaction
from django.urls import reverse

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.notifications.services import email_send_template


def account_email_verified(*, user: User, email: str) -> None:
    """Record the verification and send the welcome email, once per account (dedupe on the user)."""
    with transaction.atomic():
        audit_record(action="account.email_verified", actor=user, target=user)
        email_send_template(
            to=email,
            template="welcome",
            context={
                "pricing_path": reverse("web:pricing"),
                "account_path": reverse("web:account"),
            },
            dedupe_key=f"welcome:{user.public_id}",
        )


def staff_user_bootstrap(*, email: str) -> tuple[User, str | None]:
    """Make sure a verified staff superuser with ``email`` exists.

    Returns the user and, only when it was created now, its generated password (shown once, stored
    nowhere but as a hash).
    """
    with transaction.atomic(durable=True):
        existing = User.objects.filter(email__iexact=email).first()
        if existing is not None:
            return existing, None
        password = secrets.token_urlsafe(18)
        user = User.objects.create_superuser(email=email, password=password)
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
        audit_record(action="account.staff_bootstrapped", target=user)
        return user, password
