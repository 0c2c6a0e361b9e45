"""A whole account journey through the Django test client, with every log line captured: sign up,
verify the email, log in, reset the password, log in with the new one. Nothing secret or personal
from the journey may appear in the logs."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from django.core import mail
from django.test import Client

from tests.conftest import last_mail_to, links_in
from tests.ops.conftest import CapturedLogs

pytestmark = pytest.mark.django_db

_CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class Journey:
    """A browser-like client: CSRF enforced, tokens taken from the forms, every secret remembered."""

    def __init__(self, capture_on_commit: Callable[..., Any]) -> None:
        self.client = Client(enforce_csrf_checks=True)
        self.capture_on_commit = capture_on_commit
        self.secrets: dict[str, str] = {}

    def remember(self, label: str, value: str) -> None:
        assert value, f"{label} is empty"
        self.secrets[f"{label} #{len(self.secrets)}"] = value

    def remember_cookies(self) -> None:
        for name, morsel in self.client.cookies.items():
            if morsel.value:
                self.remember(f"cookie {name}", morsel.value)

    def get(self, path: str) -> Any:
        response = self.client.get(path)
        self.remember_cookies()
        return response

    def submit(self, path: str, data: dict[str, str]) -> Any:
        """GET the form, then POST it with its CSRF token, running on-commit work (the outbox)."""
        page = self.get(path)
        assert page.status_code == 200, (path, page.status_code)
        match = _CSRF_FIELD.search(page.content.decode())
        assert match, f"no CSRF field on {path}"
        self.remember("csrf form token", match.group(1))
        with self.capture_on_commit(execute=True):
            response = self.client.post(path, {**data, "csrfmiddlewaretoken": match.group(1)})
        self.remember_cookies()
        return response


def _path_of_link(message: Any, fragment: str) -> str:
    link = next(link for link in links_in(message) if fragment in link)
    return unquote(urlsplit(link).path)


def test_a_full_account_journey_writes_nothing_secret_to_the_logs(
    captured_logs: CapturedLogs, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    journey = Journey(django_capture_on_commit_callbacks)
    local_part = f"journey.{secrets.token_hex(6)}"
    email = f"{local_part}@example.org"
    first_password = f"Tg-{secrets.token_urlsafe(12)}-first"
    second_password = f"Tg-{secrets.token_urlsafe(12)}-second"
    journey.remember("email", email)
    journey.remember("email local part", local_part)
    journey.remember("first password", first_password)
    journey.remember("second password", second_password)

    # Sign up; the verification mail goes through the outbox after commit.
    response = journey.submit(
        "/accounts/signup/",
        {"email": email, "password1": first_password, "password2": first_password},
    )
    assert response.status_code == 302, response.content[:1000]
    confirm_path = _path_of_link(last_mail_to(email), "/accounts/confirm-email/")
    verification_key = confirm_path.rstrip("/").rsplit("/", 1)[-1]
    journey.remember("verification key", verification_key)

    # Follow the verification link (GET shows the form, POST confirms).
    response = journey.submit(confirm_path, {})
    assert response.status_code == 302, response.content[:1000]

    # Log in, then log out.
    response = journey.submit("/accounts/login/", {"login": email, "password": first_password})
    assert response.status_code == 302, response.content[:1000]
    assert "_auth_user_id" in journey.client.session
    response = journey.submit("/accounts/logout/", {})
    assert response.status_code == 302

    # Ask for a password reset and follow the link.
    outbox_before = len(mail.outbox)
    response = journey.submit("/accounts/password/reset/", {"email": email})
    assert response.status_code == 302, response.content[:1000]
    assert len(mail.outbox) > outbox_before, "no password reset mail was sent"
    reset_path = _path_of_link(last_mail_to(email), "/accounts/password/reset/key/")
    uidb36_and_key = reset_path.rstrip("/").rsplit("/", 1)[-1]
    reset_token = uidb36_and_key.split("-", 1)[1]
    journey.remember("reset link part", uidb36_and_key)
    journey.remember("reset token", reset_token)

    # allauth moves the token into the session and redirects to a token-free form.
    response = journey.get(reset_path)
    assert response.status_code == 302, response.content[:1000]
    set_password_path = response["Location"]
    assert reset_token not in set_password_path
    response = journey.submit(
        set_password_path, {"password1": second_password, "password2": second_password}
    )
    assert response.status_code == 302, response.content[:1000]

    # The new password works.
    response = journey.submit("/accounts/login/", {"login": email, "password": second_password})
    assert response.status_code == 302, response.content[:1000]
    assert "_auth_user_id" in journey.client.session
    session_key = journey.client.session.session_key
    assert session_key
    journey.remember("session key", session_key)

    logged = captured_logs.text
    requests = captured_logs.events("request")
    assert len(requests) >= 12, "the journey should have logged one line per request"
    assert all(line["request_id"] for line in requests)
    assert any(line["route"] == "account_confirm_email" for line in requests)
    leaked = {label for label, value in journey.secrets.items() if value in logged}
    assert not leaked, f"found in the logs: {sorted(leaked)}"
    # The masked form of the address is what the logs may hold.
    assert "j***@example.org" in logged
