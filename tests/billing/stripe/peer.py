"""A tiny local peer in front of localstripe, for the few things localstripe cannot do that Stripe
does (or that the network does to Stripe's answers):

- **Idempotency keys**: Stripe answers a POST repeated with the same ``Idempotency-Key`` with the
  first answer and creates nothing; localstripe ignores the header. The peer stores the first answer
  per key and replays it.
- **Listing payment intents by customer and creation time** (``GET /v1/payment_intents?customer=
  &created[gte]=``): localstripe refuses both filters (400 "Unexpected customer, created"). The peer
  lists everything from localstripe and filters.
- **A lost answer**: with ``lose(method, path_prefix)`` the request reaches localstripe and is
  processed, then the connection is closed without an answer (what a timeout looks like to the SDK).
- **A slow answer**: with ``hold(method, path_prefix)`` matching requests wait (``held`` is set when
  one arrives) until the hold is released.

Everything else is forwarded unchanged. Loopback only; started and stopped by the tests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

_FORWARDED_HEADERS = ("Authorization", "Content-Type", "Stripe-Version")


class StripePeer:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.answers: dict[str, tuple[int, bytes]] = {}
        self.losing: list[tuple[str, str]] = []
        self.holding: list[tuple[str, str]] = []
        self.held = threading.Event()
        self.released = threading.Event()
        self.lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                peer.handle(self)

            def do_POST(self) -> None:
                peer.handle(self)

            def do_DELETE(self) -> None:
                peer.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> StripePeer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    @contextmanager
    def lose(self, method: str, path_prefix: str) -> Iterator[None]:
        """While inside, answers to matching requests are lost after the request was processed."""
        rule = (method, path_prefix)
        self.losing.append(rule)
        try:
            yield
        finally:
            self.losing.remove(rule)

    @contextmanager
    def hold(self, method: str, path_prefix: str) -> Iterator[None]:
        """While inside, matching requests wait before they are forwarded."""
        rule = (method, path_prefix)
        self.held.clear()
        self.released.clear()
        self.holding.append(rule)
        try:
            yield
        finally:
            self.holding.remove(rule)
            self.released.set()

    # --- One request ------------------------------------------------------------------------------
    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        method = handler.command
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        key = handler.headers.get("Idempotency-Key") if method == "POST" else None
        if any(method == m and parts.path.startswith(p) for m, p in self.holding):
            self.held.set()
            self.released.wait(timeout=60)
        with self.lock:
            stored = self.answers.get(key) if key else None
        if stored is not None:
            status, content = stored
        elif method == "GET" and parts.path == "/v1/payment_intents":
            status, content = self._intents_listed(handler, parts.query)
        else:
            status, content = self._forward(handler, method, body)
            if key and status < 500:
                with self.lock:
                    self.answers.setdefault(key, (status, content))
        if any(method == m and parts.path.startswith(p) for m, p in self.losing):
            handler.close_connection = True
            return  # processed upstream; the answer never reaches the caller
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)

    def _headers(self, handler: BaseHTTPRequestHandler) -> dict[str, str]:
        return {name: handler.headers[name] for name in _FORWARDED_HEADERS if handler.headers[name]}

    def _forward(
        self, handler: BaseHTTPRequestHandler, method: str, body: bytes
    ) -> tuple[int, bytes]:
        response = requests.request(
            method,
            f"{self.upstream}{handler.path}",
            data=body or None,
            headers=self._headers(handler),
            timeout=30,
        )
        return response.status_code, response.content

    def _intents_listed(self, handler: BaseHTTPRequestHandler, query: str) -> tuple[int, bytes]:
        params = dict(parse_qsl(query))
        customer = params.get("customer")
        gte = int(params.get("created[gte]", "0"))
        intents: list[dict[str, Any]] = []
        after = ""
        while True:
            page = requests.get(
                f"{self.upstream}/v1/payment_intents",
                params={"limit": 100, **({"starting_after": after} if after else {})},
                headers=self._headers(handler),
                timeout=30,
            ).json()
            intents.extend(page["data"])
            if not page["has_more"] or not page["data"]:
                break
            after = page["data"][-1]["id"]
        chosen = [
            intent
            for intent in intents
            if (customer is None or intent["customer"] == customer) and intent["created"] >= gte
        ]
        listed = {"object": "list", "url": "/v1/payment_intents", "has_more": False, "data": chosen}
        return 200, json.dumps(listed).encode()
