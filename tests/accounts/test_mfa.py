from __future__ import annotations

import time

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from allauth.mfa.utils import decrypt
from django.test import Client

from tests.conftest import STRONG_PASSWORD, last_mail_to, links_in
from tollgate.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def current_code(secret: str) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def enable_totp(client) -> str:
    # Security changes ask for the password again, even right after signing in.
    assert client.get("/accounts/2fa/totp/activate/")["Location"].startswith(
        "/accounts/reauthenticate/"
    )
    assert (
        client.post("/accounts/reauthenticate/", {"password": STRONG_PASSWORD}).status_code == 302
    )
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    secret = client.session["mfa.totp.secret"]
    response = client.post("/accounts/2fa/totp/activate/", {"code": current_code(secret)})
    assert response.status_code == 302, response.content[:400]
    return secret


def test_enabling_totp_creates_recovery_codes_and_is_audited(signed_in_client, user):
    enable_totp(signed_in_client)
    types = set(Authenticator.objects.filter(user=user).values_list("type", flat=True))
    assert types == {Authenticator.Type.TOTP, Authenticator.Type.RECOVERY_CODES}
    assert AuditEvent.objects.filter(action="mfa.added", actor=user).exists()


def test_login_with_totp_enabled_needs_the_code(signed_in_client, client, user):
    secret = enable_totp(signed_in_client)
    signed_in_client.post("/accounts/logout/")

    response = client.post("/accounts/login/", {"login": user.email, "password": STRONG_PASSWORD})
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert "_auth_user_id" not in client.session
    bad = client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert bad.status_code == 200
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="mfa.failed").exists()

    response = client.post("/accounts/2fa/authenticate/", {"code": current_code(secret)})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_a_used_totp_code_cannot_be_replayed(signed_in_client, user):
    secret = enable_totp(signed_in_client)
    code = current_code(secret)
    owner = Client()
    owner.post("/accounts/login/", {"login": user.email, "password": STRONG_PASSWORD})
    assert owner.post("/accounts/2fa/authenticate/", {"code": code}).status_code == 302

    attacker = Client()
    attacker.post("/accounts/login/", {"login": user.email, "password": STRONG_PASSWORD})
    replay = attacker.post("/accounts/2fa/authenticate/", {"code": code})
    assert replay.status_code == 200
    assert "_auth_user_id" not in attacker.session


def test_a_recovery_code_works_once(signed_in_client, client, user):
    enable_totp(signed_in_client)
    authenticator = Authenticator.objects.get(user=user, type=Authenticator.Type.RECOVERY_CODES)
    code = RecoveryCodes(authenticator).get_unused_codes()[0]
    signed_in_client.post("/accounts/logout/")

    client.post("/accounts/login/", {"login": user.email, "password": STRONG_PASSWORD})
    assert client.post("/accounts/2fa/authenticate/", {"code": code}).status_code == 302
    client.post("/accounts/logout/")

    client.post("/accounts/login/", {"login": user.email, "password": STRONG_PASSWORD})
    assert client.post("/accounts/2fa/authenticate/", {"code": code}).status_code == 200
    assert "_auth_user_id" not in client.session


def test_password_reset_does_not_bypass_mfa(
    signed_in_client, client, user, django_capture_on_commit_callbacks
):
    enable_totp(signed_in_client)
    signed_in_client.post("/accounts/logout/")
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/accounts/password/reset/", {"email": user.email})
    link = next(
        link for link in links_in(last_mail_to(user.email)) if "/password/reset/key/" in link
    )
    path = link.split("://", 1)[1].split("/", 1)[1]
    form_page = client.get("/" + path, follow=True)
    new_password = "another-long-unusual-passphrase-77"
    response = client.post(
        form_page.redirect_chain[-1][0] if form_page.redirect_chain else "/" + path,
        {"password1": new_password, "password2": new_password},
    )
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session

    response = client.post("/accounts/login/", {"login": user.email, "password": new_password})
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert "_auth_user_id" not in client.session


def test_totp_secret_is_stored_encrypted_at_rest(signed_in_client, user):
    secret = enable_totp(signed_in_client)
    authenticator = Authenticator.objects.get(user=user, type=Authenticator.Type.TOTP)
    assert decrypt(authenticator.data["secret"]) == secret
