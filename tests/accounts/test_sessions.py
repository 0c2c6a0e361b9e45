from __future__ import annotations

import datetime as dt

import pytest
from allauth.usersessions.models import UserSession
from allauth.usersessions.signals import session_client_changed
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.conftest import STRONG_PASSWORD
from tollgate.core import clock

pytestmark = pytest.mark.django_db


def sign_in(user) -> Client:
    client = Client()
    response = client.post("/accounts/login/", {"login": user.email, "password": STRONG_PASSWORD})
    assert response.status_code == 302
    return client


def later(seconds: int) -> clock.frozen:
    return clock.frozen(dt.datetime.now(tz=dt.UTC) + dt.timedelta(seconds=seconds))


def test_session_ends_after_the_idle_timeout(user):
    client = sign_in(user)
    assert client.get("/account/").status_code == 200
    with later(settings.SESSION_IDLE_TIMEOUT + 5):
        response = client.get("/account/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_activity_keeps_the_session_alive_until_the_absolute_lifetime(user):
    client = sign_in(user)
    step = settings.SESSION_IDLE_TIMEOUT - 60
    elapsed = 0
    while elapsed + step < settings.SESSION_ABSOLUTE_LIFETIME:
        elapsed += step
        with later(elapsed):
            assert client.get("/account/").status_code == 200
    with later(settings.SESSION_ABSOLUTE_LIFETIME + 1):
        response = client.get("/account/")
    assert response.status_code == 302


def test_sessions_page_lists_sessions_and_signs_out_everywhere_else(user):
    laptop = sign_in(user)
    phone = sign_in(user)
    page = laptop.get("/accounts/sessions/")
    assert page.status_code == 200
    assert page.content.decode().count("<tr") >= 3  # header + two sessions

    response = laptop.post("/accounts/sessions/")
    assert response.status_code == 302
    assert laptop.get("/account/").status_code == 200
    assert phone.get("/account/").status_code == 302


def test_changing_the_email_requires_the_password_again(user, django_capture_on_commit_callbacks):
    client = sign_in(user)
    response = client.post("/accounts/email/", {"action_add": "", "email": "jane.new@example.org"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/reauthenticate/")
    assert not user.emailaddress_set.filter(email="jane.new@example.org").exists()

    client.post("/accounts/reauthenticate/", {"password": STRONG_PASSWORD})
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/accounts/email/", {"action_add": "", "email": "jane.new@example.org"}
        )
    assert response.status_code == 302
    assert user.emailaddress_set.filter(email="jane.new@example.org", verified=False).exists()


# --- Session activity (the sessions page's "last seen", address and browser) -----------------------
def usersession_writes(queries) -> list[str]:
    return [q["sql"] for q in queries if "usersessions_usersession" in q["sql"]]


def test_a_session_is_seen_once_a_minute_not_on_every_request(user):
    client = sign_in(user)
    client.get("/account/")
    first_seen = UserSession.objects.get().last_seen_at
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/account/").status_code == 200
    assert usersession_writes(queries.captured_queries) == []

    with later(61), CaptureQueriesContext(connection) as queries:
        assert client.get("/account/").status_code == 200
    assert usersession_writes(queries.captured_queries)
    assert UserSession.objects.get().last_seen_at > first_seen


def test_a_session_seen_from_another_address_or_browser_is_recorded_at_once(user):
    changes = []

    def on_change(sender, **kwargs):
        changes.append(kwargs)

    session_client_changed.connect(on_change)
    try:
        client = sign_in(user)
        client.get("/account/")
        client.get("/account/", REMOTE_ADDR="203.0.113.9")
        assert UserSession.objects.get().ip == "203.0.113.9"
        client.get("/account/", REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="Other browser/2.0")
        assert UserSession.objects.get().user_agent == "Other browser/2.0"
    finally:
        session_client_changed.disconnect(on_change)
    assert len(changes) == 2
