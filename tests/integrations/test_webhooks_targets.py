"""Where outgoing webhooks may go: public http(s) addresses only (SSRF guard), checked when an
endpoint is registered and again before every request, which connects to the address checked."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.db import transaction
from standardwebhooks.webhooks import Webhook

from tests.integrations.conftest import Receiver, receiver_start, receiver_stop
from tollgate.core.events import event_publish
from tollgate.integrations import webhook_targets
from tollgate.integrations.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tollgate.integrations.webhook_targets import (
    WebhookTargetRefused,
    WebhookUrlInvalid,
    address_is_public,
    target_resolve,
)
from tollgate.integrations.webhooks import webhook_endpoint_create, webhook_endpoint_update

pytestmark = pytest.mark.django_db

PUBLIC = "https://93.184.215.14/hooks"  # a public address: no lookup needed


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.8.9.10:8080/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.5/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://240.0.0.1/hook",
        "http://[::1]/hook",
        "http://[::]/hook",
        "http://[fe80::1]/hook",
        "http://[fc00::1]/hook",
        "http://[ff02::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:169.254.169.254]/hook",
        "http://[2002:7f00:1::1]/hook",
        "http://[64:ff9b::a00:1]/hook",
        "http://localhost:8000/hook",
        "http://LOCALHOST/hook",
    ],
)
def test_an_address_leading_to_a_private_network_is_refused(url: str) -> None:
    with pytest.raises(WebhookTargetRefused, match="public addresses"):
        webhook_endpoint_create(url=url, event_types=[], actor=None)
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.215.14/hook",
        "file:///etc/passwd",
        "gopher://93.184.215.14/",
        "javascript:alert(1)",
        "//93.184.215.14/hook",
        "93.184.215.14/hook",
        "https://",
        "",
        "https://user:pass@93.184.215.14/hook",
        "https://93.184.215.14:99999/hook",
        "https://hooks.invalid/hook",
        "https://93.184.215.14/" + "a" * 2000,
    ],
)
def test_anything_but_a_plain_resolvable_http_address_is_invalid(url: str) -> None:
    with pytest.raises(WebhookUrlInvalid):
        webhook_endpoint_create(url=url, event_types=[], actor=None)


def test_a_public_address_is_accepted() -> None:
    endpoint, _ = webhook_endpoint_create(url=f" {PUBLIC}?v=1 ", event_types=[], actor=None)
    assert endpoint.url == f"{PUBLIC}?v=1"
    target = target_resolve(url=endpoint.url)
    assert (target.scheme, target.host, target.port, target.path, target.address) == (
        "https",
        "93.184.215.14",
        443,
        "/hooks?v=1",
        "93.184.215.14",
    )


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("2002:5db8:d70e::1", True),  # 6to4 of a public address
        ("64:ff9b::5db8:d70e", False),  # NAT64 lies in reserved space, whatever it embeds
        ("198.18.0.1", False),  # benchmarking
        ("192.0.2.1", False),  # documentation
        ("::ffff:10.0.0.1", False),
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert address_is_public(ipaddress.ip_address(address)) is public


def test_a_host_that_resolves_to_any_private_address_is_refused(monkeypatch) -> None:
    resolved = [("93.184.215.14", 443), ("10.0.0.7", 443)]
    monkeypatch.setattr(webhook_targets.socket, "getaddrinfo", _Lookups("hooks.test", resolved))
    with pytest.raises(WebhookTargetRefused):
        target_resolve(url="https://hooks.test/hook")


def test_private_addresses_are_allowed_when_the_installation_says_so(private_targets) -> None:
    endpoint, _ = webhook_endpoint_create(
        url="http://localhost:8000/hook", event_types=[], actor=None
    )
    assert endpoint.url == "http://localhost:8000/hook"


def test_the_check_runs_again_before_every_request(
    settings, webhook_receiver: Receiver, make_customer, django_capture_on_commit_callbacks
) -> None:
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    endpoint, _ = webhook_endpoint_create(url=webhook_receiver.url(), event_types=[], actor=None)
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = False
    _publish(make_customer(), django_capture_on_commit_callbacks)
    attempt = WebhookAttempt.objects.get(delivery__endpoint=endpoint)
    assert attempt.error.startswith("Refused: ")
    assert attempt.status_code is None
    assert not attempt.succeeded
    assert webhook_receiver.requests == []


def test_the_url_of_an_endpoint_is_checked_when_it_changes() -> None:
    endpoint, _ = webhook_endpoint_create(url=PUBLIC, event_types=[], actor=None)
    with pytest.raises(WebhookTargetRefused):
        webhook_endpoint_update(endpoint=endpoint, url="http://10.0.0.1/", actor=None)
    endpoint.refresh_from_db()
    assert endpoint.url == PUBLIC


def test_the_request_goes_to_the_address_that_was_checked_with_the_host_name_kept(
    private_targets,
    webhook_receiver: Receiver,
    make_customer,
    monkeypatch,
    django_capture_on_commit_callbacks,
) -> None:
    # A rebinding DNS server would answer a second lookup differently: there is none.
    lookups = _Lookups("hooks.test", [("127.0.0.1", webhook_receiver.port)])
    monkeypatch.setattr(webhook_targets.socket, "getaddrinfo", lookups)
    webhook_endpoint_create(url=webhook_receiver.url(host="hooks.test"), event_types=[], actor=None)
    calls_at_registration = lookups.calls
    _publish(make_customer(), django_capture_on_commit_callbacks)
    assert lookups.calls == calls_at_registration + 1
    [request] = webhook_receiver.requests
    assert request.headers["host"] == f"hooks.test:{webhook_receiver.port}"


def test_https_is_verified_for_the_host_name_while_connecting_to_the_checked_address(
    private_targets,
    tmp_path: Path,
    make_customer,
    monkeypatch,
    django_capture_on_commit_callbacks,
) -> None:
    receiver = _tls_receiver(tmp_path, names=["hooks.test"])
    try:
        monkeypatch.setattr(
            webhook_targets.socket,
            "getaddrinfo",
            _Lookups("hooks.test", [("127.0.0.1", receiver.port)]),
        )
        monkeypatch.setattr(
            webhook_targets,
            "tls_context",
            lambda: ssl.create_default_context(cafile=str(tmp_path / "cert.pem")),
        )
        endpoint, secret = webhook_endpoint_create(
            url=receiver.url(host="hooks.test", scheme="https"), event_types=[], actor=None
        )
        _publish(make_customer(), django_capture_on_commit_callbacks)
        [request] = receiver.requests
        Webhook(secret).verify(request.body, request.headers)
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    finally:
        receiver_stop(receiver)


def test_https_to_a_certificate_for_another_name_fails(
    private_targets,
    tmp_path: Path,
    make_customer,
    monkeypatch,
    django_capture_on_commit_callbacks,
) -> None:
    receiver = _tls_receiver(tmp_path, names=["other.test"])
    try:
        monkeypatch.setattr(
            webhook_targets.socket,
            "getaddrinfo",
            _Lookups("hooks.test", [("127.0.0.1", receiver.port)]),
        )
        monkeypatch.setattr(
            webhook_targets,
            "tls_context",
            lambda: ssl.create_default_context(cafile=str(tmp_path / "cert.pem")),
        )
        webhook_endpoint_create(
            url=receiver.url(host="hooks.test", scheme="https"), event_types=[], actor=None
        )
        _publish(make_customer(), django_capture_on_commit_callbacks)
        attempt = WebhookAttempt.objects.get()
        assert attempt.error.startswith("SSLCertVerificationError")
        assert receiver.requests == []
    finally:
        receiver_stop(receiver)


def test_a_host_that_no_longer_resolves_is_recorded_as_not_found(
    private_targets, make_customer, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    with monkeypatch.context() as dns:
        dns.setattr(
            webhook_targets.socket, "getaddrinfo", _Lookups("hooks.test", [("127.0.0.1", 9)])
        )
        webhook_endpoint_create(url="http://hooks.test/hook", event_types=[], actor=None)
    monkeypatch.setattr(webhook_targets.socket, "getaddrinfo", _Lookups("other.test", []))
    _publish(make_customer(), django_capture_on_commit_callbacks)
    attempt = WebhookAttempt.objects.get()
    assert attempt.error == "The host hooks.test could not be found; check the address."


def test_https_certificates_are_verified_for_the_host_name_by_default() -> None:
    context = webhook_targets.tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


# --- Helpers -------------------------------------------------------------------------------------------
def _publish(customer, capture) -> None:
    with capture(execute=True), transaction.atomic():
        event_publish(
            event_type="customer.updated",
            object_type="customer",
            object_id=customer.public_id,
            key=f"{customer.public_id}:test",
        )


_getaddrinfo = socket.getaddrinfo


class _Lookups:
    """The DNS answer for one name (DNS is outside our control); an address is its own answer,
    and every other name is unknown."""

    def __init__(self, name: str, answers: list[tuple[str, int]]) -> None:
        self.name, self.answers, self.calls = name, answers, 0

    def __call__(self, host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host != self.name:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
            return _getaddrinfo(host, port, *args, **kwargs)
        self.calls += 1
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (address, answer_port),
            )
            for address, answer_port in self.answers
        ]


def _tls_receiver(directory: Path, *, names: list[str]) -> Receiver:
    """A receiver speaking HTTPS with a self-signed certificate for ``names`` (saved as
    ``cert.pem`` in ``directory``, the only authority the sender trusts here)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return receiver_start(tls=tls)
