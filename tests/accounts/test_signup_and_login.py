from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail

from tests.conftest import STRONG_PASSWORD, last_mail_to, links_in
from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.core.models import OutboxMessage

pytestmark = pytest.mark.django_db


def sign_up(client, capture, email="new@example.org", password=STRONG_PASSWORD):
    with capture(execute=True):
        return client.post(
            "/accounts/signup/", {"email": email, "password1": password, "password2": password}
        )


def test_sign_up_requires_email_verification_before_login(
    client, django_capture_on_commit_callbacks
):
    response = sign_up(client, django_capture_on_commit_callbacks)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    user = User.objects.get(email="new@example.org")
    assert user.password.startswith(("md5$", "argon2$"))
    assert not EmailAddress.objects.get(user=user).verified

    response = client.post(
        "/accounts/login/", {"login": "new@example.org", "password": STRONG_PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    assert "_auth_user_id" not in client.session


def test_verification_link_verifies_and_sends_welcome_email_once(
    client, django_capture_on_commit_callbacks
):
    sign_up(client, django_capture_on_commit_callbacks)
    message = last_mail_to("new@example.org")
    assert message.alternatives[0][1] == "text/html"
    link = next(link for link in links_in(message) if "/accounts/confirm-email/" in link)
    path = re.sub(r"^https?://[^/]+", "", link)

    # GET shows a confirmation form; the state changes only on POST.
    assert client.get(path).status_code == 200
    assert not EmailAddress.objects.get(email="new@example.org").verified
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(path)
    assert response.status_code == 302
    assert EmailAddress.objects.get(email="new@example.org").verified

    welcome = last_mail_to("new@example.org")
    assert welcome.subject == "Welcome to Tollgate"
    assert "/pricing/" in welcome.body
    assert "Choose a plan" in welcome.alternatives[0][0]
    # Confirming again does not send a second welcome.
    with django_capture_on_commit_callbacks(execute=True):
        client.post(path)
    assert sum(1 for m in mail.outbox if m.subject == "Welcome to Tollgate") == 1
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"account.signed_up", "account.email_verified"} <= actions


def test_delivered_outbox_email_keeps_no_body(client, django_capture_on_commit_callbacks):
    sign_up(client, django_capture_on_commit_callbacks)
    message = OutboxMessage.objects.get(kind="email")
    assert message.status == OutboxMessage.Status.DELIVERED
    assert set(message.payload) == {"to", "subject", "template"}
    assert message.payload["to"] == "n***@example.org"


def test_login_rotates_the_session_and_logout_invalidates_it(client, user):
    client.get("/accounts/login/")
    before = client.cookies["sessionid"].value if "sessionid" in client.cookies else None
    response = client.post("/accounts/login/", {"login": user.email, "password": STRONG_PASSWORD})
    assert response.status_code == 302
    after = client.cookies["sessionid"].value
    assert after != before

    stolen = client.cookies["sessionid"].value
    assert client.post("/accounts/logout/").status_code == 302
    client.cookies["sessionid"] = stolen
    response = client.get("/account/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions[-2:] == ["auth.login", "auth.logout"]


def test_failed_login_is_audited_without_the_password(client, user):
    response = client.post(
        "/accounts/login/", {"login": user.email, "password": "wrong-password-123"}
    )
    assert response.status_code == 200
    event = AuditEvent.objects.get(action="auth.login_failed")
    assert event.details == {"email": "j***@example.org"}
    assert "wrong-password" not in str(event.details)


def test_email_login_is_case_insensitive(client, user):
    response = client.post(
        "/accounts/login/", {"login": user.email.upper(), "password": STRONG_PASSWORD}
    )
    assert response.status_code == 302


@pytest.mark.parametrize("email", ["jane@example.org", "JANE@example.org"])
def test_sign_up_with_an_existing_email_reveals_nothing(
    client, user, email, django_capture_on_commit_callbacks
):
    response = sign_up(client, django_capture_on_commit_callbacks, email=email)
    # Same response as a fresh sign-up; the owner is told by email instead.
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    assert User.objects.filter(email__iexact="jane@example.org").count() == 1
    notice = last_mail_to("jane@example.org")
    assert "already" in notice.body.lower()


def test_password_reset_request_reveals_nothing(client, user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        known = client.post("/accounts/password/reset/", {"email": user.email})
        unknown = client.post("/accounts/password/reset/", {"email": "nobody@example.org"})
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"]


def test_a_sign_up_from_a_plan_returns_to_that_plans_checkout_after_verifying_and_signing_in(
    client, django_capture_on_commit_callbacks
):
    checkout = "/billing/checkout/price_0123456789ABCDEFGHJK/"
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            f"/accounts/signup/?next={checkout}",
            {
                "email": "new@example.org",
                "password1": STRONG_PASSWORD,
                "password2": STRONG_PASSWORD,
            },
        )
    link = next(
        link
        for link in links_in(last_mail_to("new@example.org"))
        if "/accounts/confirm-email/" in link
    )
    with django_capture_on_commit_callbacks(execute=True):
        client.post(re.sub(r"^https?://[^/]+", "", link))
    response = client.post(
        "/accounts/login/", {"login": "new@example.org", "password": STRONG_PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == checkout
    # Once: the next sign-in goes to the usual place.
    client.post("/accounts/logout/")
    response = client.post(
        "/accounts/login/", {"login": "new@example.org", "password": STRONG_PASSWORD}
    )
    assert response["Location"] != checkout


def test_a_sign_up_never_returns_to_another_site(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/accounts/signup/?next=https://evil.example/steal",
            {
                "email": "new@example.org",
                "password1": STRONG_PASSWORD,
                "password2": STRONG_PASSWORD,
            },
        )
    link = next(
        link
        for link in links_in(last_mail_to("new@example.org"))
        if "/accounts/confirm-email/" in link
    )
    with django_capture_on_commit_callbacks(execute=True):
        client.post(re.sub(r"^https?://[^/]+", "", link))
    response = client.post(
        "/accounts/login/", {"login": "new@example.org", "password": STRONG_PASSWORD}
    )
    assert "evil.example" not in response["Location"]
