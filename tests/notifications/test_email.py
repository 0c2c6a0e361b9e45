from __future__ import annotations

import email
from email import policy

import pytest
from django.core import mail
from django.db import transaction

from tollgate.notifications.backends import EmlFileBackend
from tollgate.notifications.services import email_render, email_send_template, html_from_text

pytestmark = pytest.mark.django_db


def test_welcome_email_has_text_and_branded_html_twins(settings):
    settings.TOLLGATE_BRAND = {
        **settings.TOLLGATE_BRAND,
        "name": "Acme",
        "primary_color": "#ff0000",
    }
    subject, text, html = email_render(
        template="welcome", context={"pricing_path": "/pricing/", "account_path": "/account/"}
    )
    assert subject == "Welcome to Acme"
    assert f"{settings.SITE_URL}/pricing/" in text
    assert "#ff0000" in html
    assert f'href="{settings.SITE_URL}/pricing/"' in html


def test_html_twin_of_a_text_email_is_escaped_and_linked():
    html = html_from_text(subject="Hi", text="Go to https://example.org/a?b=1 <script>")
    assert '<a href="https://example.org/a?b=1">' in html
    assert "<script>" not in html


def test_queued_email_is_sent_once_after_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        email_send_template(
            to="a@example.org",
            template="welcome",
            context={"pricing_path": "/p/", "account_path": "/a/"},
            dedupe_key="welcome:x",
        )
        email_send_template(
            to="a@example.org",
            template="welcome",
            context={"pricing_path": "/p/", "account_path": "/a/"},
            dedupe_key="welcome:x",
        )
    assert len(mail.outbox) == 1
    assert mail.outbox[0].extra_headers["Auto-Submitted"] == "auto-generated"


def test_eml_backend_writes_one_parseable_file_per_message(settings, tmp_path, capsys):
    settings.MAIL_DIR = tmp_path
    settings.MAIL_ECHO_LINKS = True
    message = mail.EmailMultiAlternatives(
        "Verify", "Open https://example.org/verify/abc", "from@example.org", ["to@example.org"]
    )
    message.attach_alternative("<p>html</p>", "text/html")
    assert EmlFileBackend().send_messages([message, message]) == 2
    files = sorted(tmp_path.glob("*.eml"))
    assert len(files) == 2
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert parsed["Subject"] == "Verify"
    assert (
        parsed.get_body(("plain",)).get_content().strip() == "Open https://example.org/verify/abc"
    )
    assert "https://example.org/verify/abc" in capsys.readouterr().err
