"""Unsubscribing from marketing email: a signed link, a page that never changes anything on GET,
a one-click POST (RFC 8058)."""

from __future__ import annotations

import pytest
from django.core import mail
from django.db import transaction
from django.test import Client
from django.urls import reverse

from tollgate.accounts.services import marketing_unsubscribe_token
from tollgate.audit.models import AuditEvent
from tollgate.notifications.services import email_send_template

pytestmark = pytest.mark.django_db


def unsubscribe_path(user):
    return reverse("web:email_unsubscribe", args=[marketing_unsubscribe_token(user=user)])


def opted_out(user):
    user.refresh_from_db()
    return user.marketing_opt_out_at is not None


def test_the_token_names_no_account_in_clear(user):
    token = marketing_unsubscribe_token(user=user)
    assert user.public_id not in token
    assert user.email not in token
    assert "jane" not in token


def test_the_page_asks_before_unsubscribing_and_a_get_changes_nothing(client, user):
    path = unsubscribe_path(user)
    for _ in range(2):
        response = client.get(path)
        assert response.status_code == 200
    page = response.content.decode()
    assert f'<form method="post" action="{path}">' in page
    assert "csrfmiddlewaretoken" in page
    assert ">Unsubscribe</button>" in page
    assert not opted_out(user)
    assert client.head(path).status_code == 200
    assert not opted_out(user)


def test_the_one_click_post_of_a_mail_provider_unsubscribes_once_without_a_session(user):
    provider = Client(enforce_csrf_checks=True)  # no cookie, no CSRF token: as a mail provider
    path = unsubscribe_path(user)
    response = provider.post(
        path,
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert "You are unsubscribed" in response.content.decode()
    assert opted_out(user)
    first = user.marketing_opt_out_at
    assert provider.post(path, {"List-Unsubscribe": "One-Click"}).status_code == 200
    user.refresh_from_db()
    assert user.marketing_opt_out_at == first
    assert AuditEvent.objects.filter(action="account.marketing_opted_out").count() == 1
    page = Client().get(path).content.decode()
    assert "already unsubscribed" in page


def test_a_tampered_or_foreign_token_is_refused_and_changes_nothing(client, user):
    token = marketing_unsubscribe_token(user=user)
    for bad in (token[:-2] + "xx", "not-a-token", token.replace(":", "-", 1)):
        path = reverse("web:email_unsubscribe", args=[bad])
        assert client.get(path).status_code == 400
        response = client.post(path, {"List-Unsubscribe": "One-Click"})
        assert response.status_code == 400
        assert "not valid" in response.content.decode()
    assert not opted_out(user)


def test_extra_headers_of_a_queued_email_are_sent_with_it(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        email_send_template(
            to="a@example.org",
            template="welcome",
            context={"pricing_path": "/p/", "account_path": "/a/"},
            dedupe_key="welcome:headers",
            headers={"List-Unsubscribe": "<https://example.org/u/t/>"},
        )
    [message] = mail.outbox
    assert message.extra_headers["List-Unsubscribe"] == "<https://example.org/u/t/>"
    assert message.extra_headers["Auto-Submitted"] == "auto-generated"
    assert "List-Unsubscribe: <https://example.org/u/t/>" in message.message().as_string()
