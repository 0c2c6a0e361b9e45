from __future__ import annotations

import re

import pytest
from django.test import Client, override_settings

from tests.conftest import STRONG_PASSWORD
from tests.security.conftest import INTERNALS
from tollgate.security.headers import PERMISSIONS_POLICY, admin_inline_style_hashes, style_hash

pytestmark = pytest.mark.django_db

NONCE = re.compile(r"'nonce-([A-Za-z0-9+/=]+)'")


def expected_csp(nonce: str) -> str:
    return (
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}';"
        " img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )


def assert_security_headers(response) -> None:
    csp = response["Content-Security-Policy"]
    nonce = NONCE.search(csp)
    assert nonce is not None, csp
    assert csp == expected_csp(nonce.group(1))
    assert "unsafe-inline" not in csp
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert response["Permissions-Policy"] == PERMISSIONS_POLICY
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert "Server" not in response
    assert "X-Powered-By" not in response


def test_a_page_has_every_security_header(client):
    response = client.get("/")
    assert response.status_code == 200
    assert_security_headers(response)


def test_the_permissions_policy_denies_powerful_features_and_allows_payment_on_our_origin():
    features = dict(item.split("=", 1) for item in PERMISSIONS_POLICY.split(", "))
    for feature in ("camera", "microphone", "geolocation", "usb", "serial", "bluetooth"):
        assert features[feature] == "()"
    assert features["payment"] == "(self)"


def test_a_404_has_every_security_header(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert_security_headers(response)


def test_an_api_response_has_every_security_header(client):
    response = client.get("/api/v1/status")
    assert response.status_code == 200
    assert_security_headers(response)


@override_settings(ROOT_URLCONF="tests.security.urls")
def test_a_500_has_every_security_header_and_no_internals():
    client = Client(raise_request_exception=False)
    response = client.get("/test-only/explode/")
    assert response.status_code == 500
    assert_security_headers(response)
    assert not INTERNALS.search(response.content.decode())
    assert "hunter2" not in response.content.decode()


def test_a_413_has_every_security_header(client):
    response = client.post("/", b"x" * 2_000_000, content_type="application/octet-stream")
    assert response.status_code == 413
    assert_security_headers(response)


@override_settings(RATE_LIMIT_OVERRIDES={"api-ip": "1/minute"})
def test_a_429_has_every_security_header(client):
    client.get("/api/v1/status")
    response = client.get("/api/v1/status")
    assert response.status_code == 429
    assert_security_headers(response)


@override_settings(ROOT_URLCONF="tests.security.urls")
def test_headers_naming_server_software_are_removed(client):
    response = client.get("/test-only/boastful/")
    assert response.status_code == 200
    assert "Server" not in response
    assert "X-Powered-By" not in response


def test_each_request_gets_a_new_nonce_and_the_page_style_carries_it(client):
    nonces = []
    for _ in range(3):
        response = client.get("/")
        nonce = NONCE.search(response["Content-Security-Policy"]).group(1)
        assert f'<style nonce="{nonce}">' in response.content.decode()
        nonces.append(nonce)
    assert len(set(nonces)) == 3
    assert all(len(n) == 24 for n in nonces)  # base64 of 16 bytes


def assert_inline_code_carries_the_nonce(response) -> None:
    nonce = NONCE.search(response["Content-Security-Policy"]).group(1)
    html = response.content.decode()
    for tag in re.findall(r"<(?:script|style)\b[^>]*>", html):
        assert "src=" in tag or f'nonce="{nonce}"' in tag, tag
    assert not re.search(r"\sstyle=\"", html)
    assert not re.search(r"\son[a-z]+=\"", html)


@pytest.mark.parametrize(
    "path", ["/", "/pricing/", "/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"]
)
def test_public_pages_carry_no_inline_code_without_the_nonce(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert_inline_code_carries_the_nonce(response)


@pytest.mark.parametrize(
    "path",
    [
        "/account/",
        "/accounts/email/",
        "/accounts/password/change/",
        "/accounts/reauthenticate/",
        "/accounts/2fa/",
        "/accounts/sessions/",
        "/accounts/logout/",
    ],
)
def test_signed_in_pages_carry_no_inline_code_without_the_nonce(signed_in_client, path):
    response = signed_in_client.get(path)
    assert response.status_code == 200, path
    assert_inline_code_carries_the_nonce(response)


def test_the_totp_setup_page_shows_its_qr_code_within_the_policy(signed_in_client):
    signed_in_client.post("/accounts/reauthenticate/", {"password": STRONG_PASSWORD})
    response = signed_in_client.get("/accounts/2fa/totp/activate/")
    assert response.status_code == 200
    assert_inline_code_carries_the_nonce(response)
    images = re.findall(r'<img[^>]+src="([^"]+)"', response.content.decode())
    assert images
    assert all(src.startswith(("data:", "/")) for src in images)


def test_hsts_is_sent_over_https_in_production(client):
    with override_settings(SECURE_HSTS_SECONDS=31536000):
        page = client.get("/", secure=True)
        too_large = client.post(
            "/", b"x" * 2_000_000, content_type="application/octet-stream", secure=True
        )
        plain_http = client.get("/")
    assert page["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    # Answered before Django's SecurityMiddleware, yet still covered.
    assert too_large.status_code == 413
    assert too_large["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert "Strict-Transport-Security" not in plain_http


def test_hsts_is_off_unless_configured(client):
    assert "Strict-Transport-Security" not in client.get("/", secure=True)


@override_settings(
    CSP_EXTRA={"script-src": ["https://js.stripe.com"], "frame-src": ["https://js.stripe.com"]}
)
def test_operators_can_add_gateway_sources_to_the_policy(client):
    csp = client.get("/")["Content-Security-Policy"]
    assert re.search(r"script-src 'self' 'nonce-[^']+' https://js\.stripe\.com;", csp)
    assert "frame-src 'self' https://js.stripe.com" in csp
    assert "object-src 'none'" in csp


# --- The admin under the policy ------------------------------------------------------------------


def assert_no_unallowed_inline_code(response) -> None:
    csp = response["Content-Security-Policy"]
    html = response.content.decode()
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    for block in re.findall(r"<style[^>]*>(.*?)</style>", html, flags=re.DOTALL):
        assert style_hash(block) in csp, block
    assert not re.search(r"\son[a-z]+=\"", html)


@pytest.fixture
def staff_client(client, make_user):
    staff = make_user(email="root@example.org", is_staff=True, is_superuser=True)
    client.force_login(staff)
    return client


def test_admin_pages_have_no_inline_code_the_policy_blocks(staff_client):
    for path in ("/admin/", "/admin/accounts/user/", "/admin/accounts/user/add/"):
        response = staff_client.get(path)
        assert response.status_code == 200, path
        assert "unsafe-inline" not in response["Content-Security-Policy"]
        assert_no_unallowed_inline_code(response)


@override_settings(ROOT_URLCONF="tests.security.urls_admin_without_actions")
def test_the_admin_change_list_inline_style_is_allowed_by_its_hash(staff_client):
    response = staff_client.get("/admin/accounts/user/")
    assert response.status_code == 200
    assert "<style>" in response.content.decode()
    assert_no_unallowed_inline_code(response)


def test_the_admin_relaxation_applies_to_admin_pages_only(client):
    hashes = admin_inline_style_hashes()
    assert len(hashes) == 1
    assert hashes[0] not in client.get("/")["Content-Security-Policy"]
    assert hashes[0] in client.get("/admin/login/")["Content-Security-Policy"]
