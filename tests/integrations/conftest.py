"""Integration test data: the billing fixtures (real services, the offline sandbox gateway) and a
real HTTP receiver for outgoing webhooks."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.billing.conftest import (  # noqa: F401  (fixtures)
    catalog,
    customer,
    make_customer,
    price,
    staff,
)


@dataclass(frozen=True)
class Received:
    """One request as the receiver got it (header names in lower case)."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1, in a thread: it keeps every request it gets and answers
    with ``status`` (and ``location``, ``reply`` as set)."""

    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    status: int = 200
    reply: bytes = b'{"received":true}'
    location: str = ""

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str = "/hook", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        receiver.requests.append(
            Received(
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
        )
        self.send_response(receiver.status)
        if receiver.location:
            self.send_header("Location", receiver.location)
        self.send_header("Content-Length", str(len(receiver.reply)))
        self.end_headers()
        self.wfile.write(receiver.reply)

    def log_message(self, format: str, *args: Any) -> None:
        return


def receiver_start(tls: ssl.SSLContext | None = None) -> Receiver:
    """Start a receiver, speaking HTTPS with ``tls`` (stop it with ``receiver_stop``)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.receiver = Receiver(server=server)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server.receiver


def receiver_stop(receiver: Receiver) -> None:
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def webhook_receiver() -> Iterator[Receiver]:
    receiver = receiver_start()
    yield receiver
    receiver_stop(receiver)


@pytest.fixture
def private_targets(settings: Any) -> None:
    """Webhooks may go to this machine (the local receiver), as a development setup allows."""
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
