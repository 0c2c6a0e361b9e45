"""The served application routes health, metrics, the API and webhooks through the lean middleware
chain and pages through the whole one, and the lean chain keeps every protection those routes get."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
import threading
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler

from tollgate.config.handlers import RoutedASGIHandler, RoutedWSGIHandler, lean_route


@pytest.mark.parametrize(
    ("path", "lean"),
    [
        ("/healthz", True),
        ("/readyz", True),
        ("/metrics", True),
        ("/api/v1/plans", True),
        ("/api/v1/entitlements/check", True),
        ("/webhooks/stripe/", True),
        ("/webhooks/email/postmark/", True),
        ("/healthz/", False),
        ("/apix", False),
        ("/api", False),
        ("/pricing/", False),
        ("/billing/", False),
        ("/account/api-keys/", False),
        ("/accounts/login/", False),
        ("/staff/", False),
        ("/admin/", False),
        ("/sandbox/checkout/x/", False),
        ("/static/tollgate/app.css", False),
    ],
)
def test_only_machine_routes_take_the_lean_chain(path: str, lean: bool) -> None:
    assert lean_route(path) is lean


def call(
    app: Any,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    content_type: str = "application/json",
    **headers: str,
) -> tuple[int, dict[str, str], bytes]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        **{f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()},
    }
    answer: dict[str, Any] = {}

    def start_response(
        status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
    ) -> None:
        answer["status"] = int(status.split()[0])
        answer["headers"] = dict(response_headers)

    response = app(environ, start_response)
    try:
        content = b"".join(response)
    finally:
        response.close()
    return answer["status"], answer["headers"], content


PER_RESPONSE = {"X-Request-ID", "Date", "Content-Length"}


def comparable(headers: dict[str, str]) -> dict[str, str]:
    """The headers without what differs per response (the request id, the CSP nonce) and without
    ``Vary: Cookie``: pages' middleware reads the session on every request, so their responses vary
    by cookie; a lean route reads no cookie and its response does not vary by one."""
    kept = {name: value for name, value in headers.items() if name not in PER_RESPONSE}
    vary = [
        v.strip() for v in kept.pop("Vary", "").split(",") if v.strip() and v.strip() != "Cookie"
    ]
    if vary:
        kept["Vary"] = ", ".join(vary)
    if "RateLimit" in kept:  # the second call of a pair has one request fewer left
        kept["RateLimit"] = re.sub(r"r=\d+", "r=*", kept["RateLimit"])
    if "Content-Security-Policy" in kept:
        kept["Content-Security-Policy"] = re.sub(
            r"'nonce-[^']+'", "'nonce-*'", kept["Content-Security-Policy"]
        )
    return kept


@pytest.fixture(scope="module")
def apps() -> tuple[Any, Any]:
    return RoutedWSGIHandler(), WSGIHandler()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/healthz", {}, 200),
        ("POST", "/api/v1/entitlements/check", {"Authorization": "Bearer tg_nonsense"}, 401),
        ("GET", "/api/v1/nowhere", {}, 404),
        ("POST", "/webhooks/sandbox/", {}, 400),
        ("GET", "/webhooks/nowhere/", {}, 404),
    ],
)
def test_a_lean_route_answers_with_the_same_headers_as_through_every_middleware(
    apps: tuple[Any, Any], method: str, path: str, headers: dict[str, str], status: int
) -> None:
    routed, full = apps
    lean_status, lean_headers, lean_body = call(routed, method, path, body=b"{}", **headers)
    full_status, full_headers, full_body = call(full, method, path, body=b"{}", **headers)

    assert lean_status == full_status == status
    assert comparable(lean_headers) == comparable(full_headers)
    assert lean_headers["X-Request-ID"]
    assert "Content-Security-Policy" in lean_headers
    assert "Set-Cookie" not in lean_headers
    if path.startswith("/api/"):
        assert json.loads(lean_body) == json.loads(full_body)


@pytest.mark.django_db(transaction=True)
def test_pages_keep_their_csrf_check_and_sessions(apps: tuple[Any, Any]) -> None:
    routed, _ = apps
    status, _, _ = call(
        routed, "POST", "/accounts/login/", body=b"login=a%40example.com&password=x",
        content_type="application/x-www-form-urlencoded",
    )  # fmt: skip
    assert status == 403

    status, headers, _ = call(routed, "GET", "/accounts/login/")
    assert status == 200
    assert "csrftoken" in headers.get("Set-Cookie", "") or "Cookie" in headers.get("Vary", "")


@pytest.mark.django_db(transaction=True)  # request_started closes old database connections
def test_the_asgi_application_routes_the_same_way() -> None:
    application = RoutedASGIHandler()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/healthz", "raw_path": b"/healthz", "query_string": b"",
        "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }  # fmt: skip

    async def get() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        asked: list[int] = []
        never = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if not asked:
                asked.append(1)
                return {"type": "http.request", "body": b"", "more_body": False}
            await never.wait()  # the client stays connected; Django stops listening when done
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await application(scope, receive, send)
        return sent

    # A fresh event loop in a thread of its own: another test's browser may hold this thread's loop.
    answered: list[list[dict[str, Any]]] = []
    runner = threading.Thread(target=lambda: answered.append(asyncio.run(get())))
    runner.start()
    runner.join()
    start, body = answered[0][:2]
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    assert start["status"] == 200
    assert "Content-Security-Policy" in headers
    assert "Vary" not in headers or "Cookie" not in headers["Vary"]
    assert body["body"]
