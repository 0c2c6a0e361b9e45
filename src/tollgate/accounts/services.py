from __future__ import annotations

import secrets

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core import signing
from django.db import transaction
from django.urls import reverse

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.core import clock
from tollgate.core.errors import BadRequest, PermissionDenied
from tollgate.notifications.services import absolute_url, email_send_template

_UNSUBSCRIBE_SALT = "tollgate.accounts.marketing-unsubscribe"


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


def password_set_invite(*, user: User) -> None:
    """Email ``user`` a link to choose a password (an account created for them without one), in
    the caller's transaction. The link is allauth's password-reset link: single use, it expires
    with ``PASSWORD_RESET_TIMEOUT``, and using it verifies the address."""
    from allauth.account.forms import default_token_generator
    from allauth.account.utils import user_pk_to_url_str

    path = reverse(
        "account_reset_password_from_key",
        kwargs={
            "uidb36": user_pk_to_url_str(user),
            "key": default_token_generator.make_token(user),
        },
    )
    audit_record(action="account.login_invited", target=user)
    email_send_template(
        to=user.email,
        template="login_invite",
        context={
            "set_password_url": f"{settings.SITE_URL}{path}",
            "reset_url": absolute_url("account_reset_password"),
        },
        dedupe_key=f"login_invite:{user.public_id}:{secrets.token_hex(8)}",
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
        return _staff_user_create(email=email)


def staff_password_reset(*, email: str) -> tuple[User, str]:
    """Give the staff user ``email`` a new generated password and return it (shown once, stored
    nowhere but as a hash); audited. Its sessions end (they were signed for the old password). A
    staff user that does not exist yet is created as by :func:`staff_user_bootstrap`; an account
    that is not staff is refused (its owner resets their password by email)."""
    with transaction.atomic(durable=True):
        user = User.objects.select_for_update().filter(email__iexact=email).first()
        if user is None:
            return _staff_user_create(email=email)
        if not user.is_staff:
            raise PermissionDenied(
                f"{email} is not a staff user; its owner resets the password from the sign-in page."
            )
        password = _staff_password_new()
        user.set_password(password)
        user.save(update_fields=["password"])
        audit_record(action="account.staff_password_reset", target=user)
        return user, password


def _staff_user_create(*, email: str) -> tuple[User, str]:
    password = _staff_password_new()
    user = User.objects.create_superuser(email=email, password=password)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    audit_record(action="account.staff_bootstrapped", target=user)
    return user, password


def _staff_password_new() -> str:
    return secrets.token_urlsafe(18)


def marketing_unsubscribe_token(*, user: User) -> str:
    """The signed token of the account's unsubscribe link in marketing email.

    It never expires (an unsubscribe link must keep working) and carries the account's public id
    encoded and signed with ``SECRET_KEY``, never its primary key or email address.
    """
    return signing.dumps({"u": user.public_id}, salt=_UNSUBSCRIBE_SALT)


def marketing_unsubscribe_account(*, token: str) -> User:
    """The account an unsubscribe token was issued for; ``BadRequest`` if the token is not ours."""
    invalid = BadRequest(
        "This unsubscribe link is not valid. Copy the whole link from the email, or write to us."
    )
    try:
        payload = signing.loads(token, salt=_UNSUBSCRIBE_SALT)
    except signing.BadSignature as exc:
        raise invalid from exc
    user = User.objects.filter(public_id=payload.get("u", "")).first()
    if user is None:
        raise invalid
    return user


def account_marketing_opt_out(*, token: str) -> User:
    """Stop marketing email to the account of an unsubscribe token. Idempotent: the first opt-out
    is kept and audited; repeating it changes nothing."""
    account = marketing_unsubscribe_account(token=token)
    with transaction.atomic(durable=True):
        user = User.objects.select_for_update().get(pk=account.pk)
        if user.marketing_opt_out_at is None:
            user.marketing_opt_out_at = clock.now()
            user.save(update_fields=["marketing_opt_out_at"])
            audit_record(action="account.marketing_opted_out", target=user)
    return user
