"""CSRF, safe methods and error pages: the behaviour Django and allauth provide, pinned down."""

from __future__ import annotations

import pytest
from allauth.account import app_settings as allauth_settings
from django.conf import settings
from django.test import Client, override_settings

from tests.security.conftest import INTERNALS, client_from, login

pytestmark = pytest.mark.django_db


def assert_house_error_page(response, status: int) -> None:
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert f'<p class="code">{status}</p>' in html
    assert not INTERNALS.search(html), html


def test_a_form_post_without_a_csrf_token_is_refused_in_the_house_format(user):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"login": user.email, "password": "x"})
    assert_house_error_page(response, 403)
    assert "Reload the page and submit it again" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_form_post_with_the_csrf_token_goes_through(user):
    client = Client(enforce_csrf_checks=True)
    client.get("/accounts/login/")
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    response = client.post(
        "/accounts/login/", {"login": user.email, "password": "x", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 200  # the form again: wrong password, but not a CSRF refusal


def test_sign_out_needs_a_post(signed_in_client):
    assert allauth_settings.LOGOUT_ON_GET is False
    page = signed_in_client.get("/accounts/logout/")
    assert page.status_code == 200  # a confirmation form, nothing more
    assert signed_in_client.get("/account/").status_code == 200  # still signed in
    signed_in_client.post("/accounts/logout/")
    assert signed_in_client.get("/account/").status_code == 302


def test_a_bad_request_page_shows_no_internals(client):
    fields = "&".join(f"f{i}=v" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = client.get(f"/?{fields}")
    assert_house_error_page(response, 400)


def test_a_not_found_page_shows_no_internals(client):
    assert_house_error_page(client.get("/no/such/page/"), 404)


def test_a_too_large_page_shows_no_internals(client):
    response = client.post("/", b"x" * 2_000_000, content_type="application/octet-stream")
    assert_house_error_page(response, 413)


@override_settings(RATE_LIMIT_OVERRIDES={"login-ip": "1/minute"})
def test_a_too_many_requests_page_shows_no_internals(db):
    client = client_from("192.0.2.200")
    login(client, "a@example.org", "x")
    assert_house_error_page(login(client, "a@example.org", "x"), 429)


@override_settings(ROOT_URLCONF="tests.security.urls")
def test_a_server_error_page_shows_no_internals():
    client = Client(raise_request_exception=False)
    response = client.get("/test-only/explode/")
    assert_house_error_page(response, 500)
    assert "hunter2" not in response.content.decode()


@override_settings(ROOT_URLCONF="tests.security.urls")
def test_a_server_error_in_the_api_answers_in_the_error_shape_without_internals():
    client = Client(raise_request_exception=False)
    response = client.get("/api/test-only/explode/")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "hunter2" not in response.content.decode()
    assert not INTERNALS.search(response.content.decode())


def test_debug_is_off():
    assert settings.DEBUG is False
