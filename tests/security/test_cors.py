from __future__ import annotations

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db

ALLOWED = "https://app.example.com"


@pytest.fixture(autouse=True)
def _one_allowed_origin():
    with override_settings(CORS_ALLOWED_ORIGINS=[ALLOWED]):
        yield


def test_an_allowed_origin_may_read_the_api(client):
    response = client.get("/api/v1/status", headers={"Origin": ALLOWED})
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ALLOWED


def test_an_allowed_origin_gets_a_preflight_answer_for_the_api(client):
    response = client.options(
        "/api/v1/status",
        headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"},
    )
    assert response["Access-Control-Allow-Origin"] == ALLOWED
    assert "Access-Control-Allow-Credentials" not in response


def test_pages_are_never_shared_cross_origin(client):
    for path in ("/", "/accounts/login/"):
        response = client.get(path, headers={"Origin": ALLOWED})
        assert "Access-Control-Allow-Origin" not in response, path


def test_a_disallowed_origin_gets_no_cors_headers(client):
    response = client.get("/api/v1/status", headers={"Origin": "https://evil.example.net"})
    assert response.status_code == 200
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]


def test_credentials_are_not_allowed_by_default(client):
    response = client.get("/api/v1/status", headers={"Origin": ALLOWED})
    assert "Access-Control-Allow-Credentials" not in response
