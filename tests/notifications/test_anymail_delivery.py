"""EMAIL_URL=anymail://postmark?... sends through anymail's Postmark backend: the query parameters
become its settings, and the email reaches a stand-in for Postmark's HTTP API on the loopback
address (the request format is Postmark's, as anymail builds it)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest
from django.core import mail
from django.db import transaction

from tollgate.config.email import email_config
from tollgate.core.models import OutboxMessage
from tollgate.notifications.services import email_send_template

pytestmark = pytest.mark.django_db


class _PostmarkApi(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        answer = json.dumps(
            {
                "To": body["To"],
                "SubmittedAt": "2026-12-05T10:00:00Z",
                "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817",
                "ErrorCode": 0,
                "Message": "OK",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def postmark_api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_PostmarkApi,), {"requests": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", received
    server.shutdown()
    server.server_close()
    thread.join(timeout=30)


def test_anymail_url_sends_through_the_providers_api_with_its_token(
    settings, postmark_api, django_capture_on_commit_callbacks
):
    api_url, received = postmark_api
    config = email_config(
        url=f"anymail://postmark?server_token=tok%2Fen+1&api_url={quote(api_url, safe='')}",
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
    settings.ANYMAIL = config.anymail

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        email_send_template(
            to="ada@example.org",
            template="welcome",
            context={"pricing_path": "/pricing/", "account_path": "/account/"},
            dedupe_key="welcome:ada",
        )

    [request] = received
    assert request["path"] == "/email"
    assert request["headers"]["X-Postmark-Server-Token"] == "tok/en+1"
    assert request["body"]["To"] == "ada@example.org"
    assert request["body"]["Subject"].startswith("Welcome to")
    assert "/pricing/" in request["body"]["TextBody"]
    assert "<html" in request["body"]["HtmlBody"].lower()
    assert mail.outbox == []
    assert OutboxMessage.objects.get().status == OutboxMessage.Status.DELIVERED
