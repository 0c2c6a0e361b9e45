"""Where outgoing webhooks may go, and how a request gets there.

A target is an ``http`` or ``https`` address whose host resolves only to public addresses: a
loopback, private, link-local (the cloud metadata service at 169.254.169.254), multicast, reserved
or unspecified address, or an IPv6 address that embeds one of those, is refused unless
``WEBHOOKS_ALLOW_PRIVATE_TARGETS`` is set. The check runs when an endpoint is registered and
before every delivery, and the request connects to the very address that was checked (never a
second lookup that a rebinding DNS server could answer differently), while the ``Host`` header and,
for https, the TLS server name and certificate check use the host name. Redirects are not
followed and at most ``RESPONSE_CAP`` bytes of the answer are read.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from tollgate.core.errors import ValidationFailed

SCHEMES = ("http", "https")
RESPONSE_CAP = 4096
URL_MAX_LENGTH = 2000

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookUrlInvalid(ValidationFailed):
    code = "webhook_url_invalid"
    default_message = "Enter an http:// or https:// address, like https://example.com/webhooks."


class WebhookTargetRefused(ValidationFailed):
    code = "webhook_target_refused"
    default_message = (
        "This address leads to a private, local or reserved network; webhooks are sent only to "
        "public addresses."
    )


@dataclass(frozen=True, slots=True)
class Target:
    """A checked destination: connect to ``address``, speak to ``host``."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


@dataclass(frozen=True, slots=True)
class TargetResponse:
    status: int
    body: bytes


def target_resolve(*, url: str) -> Target:
    """The destination of ``url``, resolved and checked (see the module's docstring). Raises
    ``WebhookUrlInvalid`` for an address that is not a plain http(s) URL or whose host does not
    resolve, and ``WebhookTargetRefused`` for one that leads to a private network."""
    scheme, host, port, path = _url_parts(url)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookUrlInvalid(
            f"The host {host} could not be found; check the address.", details={"field": "url"}
        ) from exc
    addresses = [str(sockaddr[0]) for *_, sockaddr in found]
    if not settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS and not all(
        address_is_public(ipaddress.ip_address(address)) for address in addresses
    ):
        raise WebhookTargetRefused(details={"field": "url"})
    return Target(scheme=scheme, host=host, port=port, path=path, address=addresses[0])


def _url_parts(url: str) -> tuple[str, str, int, str]:
    if len(url) > URL_MAX_LENGTH:
        raise WebhookUrlInvalid(
            f"Use an address of at most {URL_MAX_LENGTH} characters.", details={"field": "url"}
        )
    try:
        URLValidator(schemes=list(SCHEMES))(url)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except (ValidationError, ValueError) as exc:
        raise WebhookUrlInvalid(details={"field": "url"}) from exc
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlInvalid(
            "Leave the user name and password out of the address; the signature authenticates "
            "each request.",
            details={"field": "url"},
        )
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return parts.scheme, parts.hostname or "", port, path


def address_is_public(address: IPAddress) -> bool:
    """Whether ``address`` is on the public internet (and so is any IPv4 address it embeds)."""
    if isinstance(address, ipaddress.IPv6Address):
        # (NAT64's 64:ff9b::/96 lies in ::/8, reserved: refused whatever it embeds.)
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None and not address_is_public(embedded):
            return False
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def target_post(
    *, target: Target, body: bytes, headers: dict[str, str], timeout: float
) -> TargetResponse:
    """POST ``body`` to ``target`` and read the start of the answer. Network and protocol errors
    (``OSError``, ``http.client.HTTPException``) are the caller's to record."""
    connection = _connection(target, timeout)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        return TargetResponse(status=response.status, body=response.read(RESPONSE_CAP))
    finally:
        connection.close()


def tls_context() -> ssl.SSLContext:
    """Certificates are verified against the system's trusted authorities and the host name."""
    return ssl.create_default_context()


def _connection(target: Target, timeout: float) -> http.client.HTTPConnection:
    if target.scheme == "https":
        return _PinnedHTTPSConnection(target, timeout=timeout, context=tls_context())
    return _PinnedHTTPConnection(target, timeout=timeout)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to the checked address of its host."""

    def __init__(self, target: Target, *, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to the checked address of its host, verified for the host name."""

    def __init__(self, target: Target, *, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self.address = target.address
        self.tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        try:
            self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
