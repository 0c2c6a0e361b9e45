"""Email leaves through a real SMTP conversation, with implicit TLS or STARTTLS, configured by
EMAIL_URL, against a server on the loopback address whose certificate the client verifies."""

from __future__ import annotations

import email
import ssl
from email import policy

import pytest
from django.db import transaction

from tests.notifications.smtp_server import make_certificates, running_smtp_server
from tollgate.config.email import email_config
from tollgate.core.models import OutboxMessage
from tollgate.notifications.services import email_send_template

pytestmark = pytest.mark.django_db

PASSWORD = "p@ss:w/rd 100%"
URL_PASSWORD = "p%40ss%3Aw%2Frd%20100%25"


@pytest.fixture
def certificates(tmp_path, monkeypatch):
    certs = make_certificates(tmp_path)
    # The client trusts the test authority the way it trusts a public one: through OpenSSL's
    # default verify paths (ssl.create_default_context, which Django's SMTP backend uses).
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_file))
    return certs


def configure(settings, url: str) -> None:
    config = email_config(
        url=url,
        backend="",
        host="",
        port=None,
        user="",
        password="",
        use_tls=None,
        use_ssl=False,
        webhook_secrets=[],
        testing=True,
        production=True,
    )
    assert config.problems == []
    settings.EMAIL_BACKEND = config.backend
    settings.EMAIL_HOST = config.host
    settings.EMAIL_PORT = config.port
    settings.EMAIL_HOST_USER = config.user
    settings.EMAIL_HOST_PASSWORD = config.password
    settings.EMAIL_USE_TLS = config.use_tls
    settings.EMAIL_USE_SSL = config.use_ssl
    settings.EMAIL_TIMEOUT = 20


def send_welcome(django_capture_on_commit_callbacks, to: str = "ada@example.org") -> None:
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        email_send_template(
            to=to,
            template="welcome",
            context={"pricing_path": "/pricing/", "account_path": "/account/"},
            dedupe_key=f"welcome:{to}",
        )


@pytest.mark.parametrize("implicit_tls", [True, False], ids=["smtps-465", "smtp-starttls"])
def test_email_is_delivered_over_tls_with_the_login_from_email_url(
    settings, certificates, django_capture_on_commit_callbacks, implicit_tls
):
    with running_smtp_server(certificates, implicit_tls=implicit_tls) as server:
        scheme = "smtps" if implicit_tls else "smtp"
        configure(
            settings, f"{scheme}://mailer%40example.org:{URL_PASSWORD}@127.0.0.1:{server.port}"
        )
        send_welcome(django_capture_on_commit_callbacks)

    [received] = server.messages
    assert received.tls_version in ("TLSv1.2", "TLSv1.3")
    assert received.login == ("mailer@example.org", PASSWORD)
    assert received.rcpt_to == ["ada@example.org"]
    assert server.sessions_without_tls_commands == []
    parsed = email.message_from_bytes(received.data, policy=policy.default)
    assert parsed["To"] == "ada@example.org"
    assert parsed["Subject"].startswith("Welcome to")
    assert OutboxMessage.objects.get().status == OutboxMessage.Status.DELIVERED


def test_a_server_certificate_the_client_does_not_trust_fails_the_delivery(
    settings, certificates, django_capture_on_commit_callbacks, monkeypatch, tmp_path
):
    (tmp_path / "other").mkdir()
    other = make_certificates(tmp_path / "other")
    monkeypatch.setenv("SSL_CERT_FILE", str(other.ca_file))
    with running_smtp_server(certificates, implicit_tls=False) as server:
        configure(settings, f"smtp://mailer:{URL_PASSWORD}@127.0.0.1:{server.port}")
        send_welcome(django_capture_on_commit_callbacks)

    assert server.messages == []
    message = OutboxMessage.objects.get()
    assert message.status == OutboxMessage.Status.PENDING  # retried later, with back-off
    assert message.last_error.startswith(ssl.SSLCertVerificationError.__name__)
    assert PASSWORD not in message.last_error
