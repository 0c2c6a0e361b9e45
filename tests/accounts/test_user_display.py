"""People are shown email addresses, never internal ids: the sign-in message names the account's
address; the verification email and the confirmation page, which someone else may open, show the
account's address masked."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from tests.accounts.test_sessions import sign_in
from tests.accounts.test_signup_and_login import sign_up
from tests.conftest import STRONG_PASSWORD, last_mail_to, links_in

pytestmark = pytest.mark.django_db

INTERNAL_ID = re.compile(r"\busr_\w+")


def html_of(message) -> str:
    [(content, _mimetype)] = message.alternatives
    return str(content)


def confirmation_path(message) -> str:
    link = next(link for link in links_in(message) if "/accounts/confirm-email/" in link)
    return re.sub(r"^https?://[^/]+", "", link)


def test_the_sign_in_message_names_the_accounts_email(client, user):
    response = client.post("/accounts/login/", {"login": user.email, "password": STRONG_PASSWORD})
    assert response.status_code == 302
    texts = [str(message) for message in get_messages(response.wsgi_request)]
    assert texts == [f"Successfully signed in as {user.email}."]


def test_the_sign_up_verification_email_and_page_show_no_internal_id(
    client, django_capture_on_commit_callbacks
):
    sign_up(client, django_capture_on_commit_callbacks, email="new@example.org")
    message = last_mail_to("new@example.org")
    for part in (message.subject, message.body, html_of(message)):
        assert not INTERNAL_ID.search(part), part
    assert "signed up for Tollgate with this email address" in message.body

    page = client.get(confirmation_path(message)).content.decode()
    assert not INTERNAL_ID.search(page)
    assert "new@example.org</a> is your email address" in page


def test_an_address_change_shows_the_accounts_address_masked(
    user, django_capture_on_commit_callbacks
):
    client = sign_in(user)
    client.post("/accounts/reauthenticate/", {"password": STRONG_PASSWORD})
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/accounts/email/", {"action_add": "", "email": "june@example.net"})
    message = last_mail_to("june@example.net")
    for part in (message.subject, message.body, html_of(message)):
        assert not INTERNAL_ID.search(part), part
        assert user.email not in part  # the new address's owner may be someone else
    assert "The Tollgate account j***@example.org asked to use this email address" in message.body

    # Whoever holds the link, signed in or not, may open the page.
    page = Client().get(confirmation_path(message)).content.decode()
    assert not INTERNAL_ID.search(page)
    assert user.email not in page
    assert "the new email address of the account j***@example.org" in page
