"""Sentry, end to end: the real SDK sends real envelopes over HTTP to a local server standing in for
Sentry; the test decodes what arrived and looks for anything secret or personal."""

from __future__ import annotations

import gzip
import io
import json
import logging
import secrets
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, quote_plus, urlencode
from wsgiref.util import setup_testing_defaults

import pytest
import sentry_sdk
from django.http import HttpResponse
from django.test import RequestFactory, override_settings
from django.utils.log import log_response

from tests.ops.conftest import CapturedLogs
from tollgate import __version__
from tollgate.core.redaction import REDACTED
from tollgate.ops.sentry import init_sentry, scrub_breadcrumb, scrub_event, sentry_release


@dataclass
class ReceivedEnvelope:
    path: str
    headers: dict[str, str]
    header: dict[str, Any]
    items: list[tuple[dict[str, Any], bytes]]
    raw: bytes

    def events(self, kind: str = "event") -> list[dict[str, Any]]:
        return [json.loads(payload) for item, payload in self.items if item.get("type") == kind]


def decode_body(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        brotli = pytest.importorskip("brotli", reason="the SDK sent brotli without the module")
        return bytes(brotli.decompress(body))
    raise AssertionError(f"unexpected Content-Encoding {encoding!r}")


def parse_envelope(raw: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    """Sentry's envelope format: a JSON header line, then items (a JSON header line and a payload
    of ``length`` bytes, or up to the next newline when no length is given)."""
    header_line, _, rest = raw.partition(b"\n")
    items: list[tuple[dict[str, Any], bytes]] = []
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        if not item_line.strip():
            continue
        item_header = json.loads(item_line)
        length = item_header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length:].removeprefix(b"\n")
        items.append((item_header, payload))
    return json.loads(header_line), items


@dataclass
class FakeSentry:
    """A local HTTP server on a free loopback port that accepts and keeps envelopes."""

    server: ThreadingHTTPServer
    received: list[ReceivedEnvelope] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.server.server_address[1]}/1"

    def events(self, kind: str = "event") -> list[dict[str, Any]]:
        with self.lock:
            return [event for envelope in self.received for event in envelope.events(kind)]

    def wait_for_events(
        self, count: int, kind: str = "event", timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        sentry_sdk.flush(timeout=timeout)
        deadline = time.monotonic() + timeout
        while len(self.events(kind)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        events = self.events(kind)
        assert len(events) >= count, f"expected {count} events, got {len(events)}"
        return events

    def raw_text(self) -> str:
        with self.lock:
            return "\n".join(envelope.raw.decode("utf-8", "replace") for envelope in self.received)


@pytest.fixture
def fake_sentry() -> Iterator[FakeSentry]:
    holder: list[FakeSentry] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            raw = decode_body(body, self.headers.get("Content-Encoding", ""))
            header, items = parse_envelope(raw)
            sink = holder[0]
            with sink.lock:
                sink.received.append(
                    ReceivedEnvelope(self.path, dict(self.headers.items()), header, items, raw)
                )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(FakeSentry(server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(params=[0.0], ids=["errors"])
def sentry_reporting(
    fake_sentry: FakeSentry, request: pytest.FixtureRequest
) -> Iterator[FakeSentry]:
    """Sentry initialised the way settings.py does it, pointed at the fake server (the parameter is
    the traces sample rate); afterwards the SDK is back to no client at all, as in every other test."""
    init_sentry(dsn=fake_sentry.dsn, environment="test", traces_sample_rate=request.param)
    try:
        with sentry_sdk.isolation_scope():
            yield fake_sentry
    finally:
        sentry_sdk.get_client().close(timeout=5)
        sentry_sdk.get_global_scope().set_client(None)
        sentry_sdk.get_isolation_scope().clear()
        sentry_sdk.get_current_scope().clear()


@dataclass
class Secrets:
    email: str = field(default_factory=lambda: f"sentry.{secrets.token_hex(4)}@example.org")
    password: str = field(default_factory=lambda: f"pw-{secrets.token_hex(10)}")
    card: str = field(default_factory=lambda: "4242" * 4)
    stripe_key: str = field(default_factory=lambda: "sk_" + "test_" + secrets.token_hex(12))
    bearer: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    session_id: str = field(default_factory=lambda: secrets.token_hex(16))
    link_token: str = field(default_factory=lambda: secrets.token_hex(12))

    def all(self) -> dict[str, str]:
        return dict(vars(self))


def assert_nothing_secret(fake: FakeSentry, found: Secrets) -> None:
    """No secret in the envelopes, neither as is nor URL-encoded (query strings, URLs)."""
    text = fake.raw_text()
    parsed = json.dumps(fake.events("event") + fake.events("transaction"))
    leaked = {
        name
        for name, value in found.all().items()
        for form in {value, quote(value), quote_plus(value)}
        if form in text or form in parsed
    }
    assert not leaked, f"sent to Sentry: {sorted(leaked)}"


def assert_personal_data_defaults_are_off(event: dict[str, Any]) -> None:
    client = sentry_sdk.get_client()
    assert not client.should_send_default_pii()
    assert client.options["max_request_body_size"] == "never"
    assert client.options["include_local_variables"] is False
    assert not (event.get("user") or {}).get("ip_address")
    assert not (event.get("user") or {}).get("email")
    for exception in (event.get("exception") or {}).get("values", []):
        for frame in (exception.get("stacktrace") or {}).get("frames", []):
            assert "vars" not in frame, f"local variables were sent for {frame.get('function')}"


def test_a_captured_exception_reaches_sentry_scrubbed(sentry_reporting: FakeSentry) -> None:
    found = Secrets()

    def charge(customer_email: str, card_number: str, api_key: str, password: str) -> None:
        authorization = f"Authorization: Bearer {found.bearer}"
        # Local variables holding secrets under innocent names: only leaving them out is safe.
        note = f"customer {customer_email} typed {password} and paid with {card_number}"
        if note:
            raise RuntimeError(
                f"charge failed for {customer_email} with card {card_number} using {api_key};"
                f" password={password}; {authorization}"
            )

    def add_request_data(event: Any, hint: dict[str, Any]) -> Any:
        query = f"email={found.email}&token={found.link_token}"
        event["request"] = {
            "url": f"https://billing.example.org/accounts/confirm-email/{found.link_token}/?{query}",
            "method": "POST",
            "query_string": query,
            "headers": {
                "Authorization": f"Bearer {found.bearer}",
                "Cookie": f"sessionid={found.session_id}",
                "X-Api-Key": found.stripe_key,
                "User-Agent": "pytest",
            },
            "cookies": {"sessionid": found.session_id},
            "data": {"password": found.password, "card_number": found.card, "email": found.email},
        }
        return event

    sentry_sdk.add_breadcrumb(
        category="auth", message=f"login by {found.email}", data={"password": found.password}
    )
    with sentry_sdk.new_scope() as scope:
        scope.add_event_processor(add_request_data)
        try:
            charge(found.email, found.card, found.stripe_key, found.password)
        except RuntimeError as error:
            sentry_sdk.capture_exception(error)

    [event] = sentry_reporting.wait_for_events(1)
    assert_nothing_secret(sentry_reporting, found)
    assert_personal_data_defaults_are_off(event)
    [exception] = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert "s***@example.org" in exception["value"]
    assert f"card {REDACTED}" in exception["value"]
    request = event["request"]
    assert request["url"].startswith(
        f"https://billing.example.org/accounts/confirm-email/{REDACTED}/"
    )
    assert request["data"]["password"] == REDACTED
    assert request["headers"]["User-Agent"] == "pytest"
    assert event["release"].startswith("tollgate@")
    assert event["environment"] == "test"
    envelope = sentry_reporting.received[0]
    assert envelope.path == "/api/1/envelope/"


def call_wsgi(environ: dict[str, Any]) -> tuple[str, bytes]:
    """One request through the project's real WSGI application (the entry point servers use, which
    the Sentry SDK wraps), not the test client's handler."""
    from tollgate.config.wsgi import application

    status: list[str] = []

    def start_response(
        status_line: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        status.append(status_line)
        return lambda data: None

    result = application(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return status[0], body


def failing_request(found: Secrets) -> dict[str, Any]:
    """A WSGI environ for a POST to the failing test view, carrying every kind of secret."""
    form = urlencode({"password": found.password, "card_number": found.card, "email": found.email})
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": f"/sentry-test/fail/{found.link_token}/",
        "QUERY_STRING": urlencode({"email": found.email, "token": found.link_token}),
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(form)),
        "wsgi.input": io.BytesIO(form.encode()),
        "HTTP_HOST": "testserver",
        "HTTP_AUTHORIZATION": f"Bearer {found.bearer}",
        "HTTP_COOKIE": f"sessionid={found.session_id}; theme=dark",
        "HTTP_X_API_KEY": found.stripe_key,
        "HTTP_X_FORWARDED_FOR": "198.51.100.23",
        "HTTP_USER_AGENT": "pytest",
        "REMOTE_ADDR": "203.0.113.77",
    }
    setup_testing_defaults(environ)
    return environ


@pytest.mark.django_db(transaction=True)
def test_an_error_in_a_request_reaches_sentry_scrubbed(
    sentry_reporting: FakeSentry, captured_logs: CapturedLogs
) -> None:
    found = Secrets()
    with override_settings(ROOT_URLCONF="tests.ops.sentry_urls"):
        status, _ = call_wsgi(failing_request(found))
    assert status.startswith("500")

    [failure] = sentry_reporting.wait_for_events(1)
    assert_nothing_secret(sentry_reporting, found)
    raw = sentry_reporting.raw_text()
    assert "203.0.113.77" not in raw
    assert "198.51.100.23" not in raw
    assert_personal_data_defaults_are_off(failure)
    assert failure["exception"]["values"][-1]["type"] == "ChargeFailed"
    assert failure["exception"]["values"][-1]["value"] == f"charge failed for card {REDACTED}"
    assert failure["transaction"] == "/sentry-test/fail/{token}/"
    request = failure["request"]
    assert request["url"] == f"http://testserver/sentry-test/fail/{REDACTED}/"
    assert request["method"] == "POST"
    assert not request.get("data"), "request bodies must never be sent"
    assert request.get("cookies") in (None, REDACTED)
    headers = {name.lower(): value for name, value in request.get("headers", {}).items()}
    assert headers["user-agent"] == "pytest"
    assert headers.get("authorization") in (None, REDACTED, "[Filtered]")
    assert headers.get("cookie") in (None, REDACTED, "[Filtered]")
    # The same failure in our own logs: Django's error line names the path, redacted there too.
    assert f"Internal Server Error: /sentry-test/fail/{REDACTED}/" in captured_logs.text
    assert found.link_token not in captured_logs.text
    assert found.card not in captured_logs.text


@pytest.mark.django_db
def test_django_log_lines_naming_a_secret_path_are_redacted_in_breadcrumbs(
    sentry_reporting: FakeSentry,
) -> None:
    key = f"MQ:1t{secrets.token_hex(4)}:{secrets.token_hex(8)}"
    request = RequestFactory().get(f"/accounts/confirm-email/{key}/")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    logging.getLogger("django.request").addHandler(keep)
    try:
        log_response(
            "Not Found: %s",
            request.path,
            response=HttpResponse(status=404),
            request=request,
            level="error",
        )
    finally:
        logging.getLogger("django.request").removeHandler(keep)
    [record] = records
    crumb = {"message": record.getMessage(), "category": record.name, "level": "error", "data": {}}
    assert key in crumb["message"]
    scrubbed = scrub_breadcrumb(crumb, {"log_record": record})
    assert scrubbed["message"] == f"Not Found: /accounts/confirm-email/{REDACTED}/"
    event = {"logentry": {"message": "Not Found: %s", "params": [request.path]}, "level": "error"}
    assert key not in json.dumps(scrub_event(event, {"log_record": record}))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sentry_reporting", [1.0], ids=["tracing"], indirect=True)
def test_performance_traces_are_scrubbed_like_errors(sentry_reporting: FakeSentry) -> None:
    found = Secrets()
    with override_settings(ROOT_URLCONF="tests.ops.sentry_urls"):
        call_wsgi(failing_request(found))
    [transaction] = sentry_reporting.wait_for_events(1, kind="transaction")
    sentry_reporting.wait_for_events(1)
    assert_nothing_secret(sentry_reporting, found)
    assert transaction["transaction"] == "/sentry-test/fail/{token}/"
    assert transaction["request"]["url"] == f"http://testserver/sentry-test/fail/{REDACTED}/"
    assert transaction["spans"], "the traced request recorded no spans"


def test_no_client_is_left_behind_for_other_tests() -> None:
    assert not sentry_sdk.get_client().is_active()
    logging.getLogger("tollgate.test").error("an error with no Sentry configured")


@pytest.mark.parametrize(
    ("configured", "expected"),
    [("", f"tollgate@{__version__}"), ("  ", f"tollgate@{__version__}"), ("v2.3.1", "v2.3.1")],
)
def test_the_release_is_sentry_release_when_set_else_the_version(
    configured: str, expected: str
) -> None:
    assert sentry_release(configured) == expected
