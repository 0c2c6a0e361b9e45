from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from tests.conftest import STRONG_PASSWORD
from tests.security.conftest import INTERNALS

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"


def too_big() -> bytes:
    return b"x" * (settings.MAX_REQUEST_BODY_BYTES + 1)


def test_a_body_over_the_limit_gets_a_413_page(client):
    response = client.post("/accounts/login/", too_big(), content_type=FORM)
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "Request too large" in html
    assert not INTERNALS.search(html)


def test_a_body_over_the_limit_gets_a_413_in_the_api_error_shape(client):
    response = client.post("/api/v1/status", too_big(), content_type="application/json")
    assert response.status_code == 413
    assert response.json() == {
        "error": {
            "code": "payload_too_large",
            "message": (
                f"The request is larger than the {settings.MAX_REQUEST_BODY_BYTES} bytes we accept."
                " Send less and try again."
            ),
            "details": {"max_bytes": settings.MAX_REQUEST_BODY_BYTES},
        }
    }


def test_a_body_exactly_at_the_limit_is_accepted(client):
    body = urlencode({"login": "a@example.org", "password": "x"})
    index = 0
    while len(body) < settings.MAX_REQUEST_BODY_BYTES:
        room = settings.MAX_REQUEST_BODY_BYTES - len(body) - len(f"&p{index}=")
        body += f"&p{index}=" + "p" * max(0, min(room, settings.MAX_FIELD_VALUE_LENGTH))
        index += 1
    assert len(body) == settings.MAX_REQUEST_BODY_BYTES
    response = client.post("/accounts/login/", body, content_type=FORM)
    assert response.status_code == 200  # the form again, with a wrong-password error


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2048)
def test_a_form_django_refuses_to_read_gets_a_413(client):
    # Within MAX_REQUEST_BODY_BYTES, but over what Django will read into memory.
    body = urlencode({"login": "a@example.org", "password": "p" * 1000, "other": "o" * 2000})
    response = client.post("/accounts/login/", body, content_type=FORM)
    assert response.status_code == 413


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2048, ROOT_URLCONF="tests.security.urls")
def test_a_body_a_view_reads_past_the_reading_limit_gets_a_413(client):
    payload = json.dumps({"blob": "b" * 4000})
    page = client.post("/test-only/read-body/", payload, content_type="application/json")
    api = client.post("/api/test-only/read-body/", payload, content_type="application/json")
    assert page.status_code == 413
    assert api.status_code == 413
    assert api.json()["error"]["code"] == "payload_too_large"


@override_settings(ROOT_URLCONF="tests.security.urls")
def test_a_body_within_every_limit_reaches_the_view(client):
    response = client.post("/test-only/read-body/", '{"a": 1}', content_type="application/json")
    assert response.status_code == 200
    assert response.content == b"read 8 bytes"


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "10, 10", " 12"])
def test_a_malformed_content_length_gets_a_400(client, value):
    response = client.generic(
        "POST", "/accounts/login/", b"login=a", content_type=FORM, CONTENT_LENGTH=value
    )
    assert response.status_code == 400
    assert "Content-Length" in response.content.decode()


def test_a_malformed_content_length_gets_a_400_in_the_api_error_shape(client):
    response = client.generic(
        "POST", "/api/v1/status", b"{}", content_type="application/json", CONTENT_LENGTH="x"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_too_many_form_fields_get_a_400_that_says_so(client):
    fields = {f"f{i}": "v" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    response = client.post("/accounts/login/", urlencode(fields), content_type=FORM)
    assert response.status_code == 400
    html = response.content.decode()
    assert f"more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields" in html
    assert not INTERNALS.search(html)


def test_too_many_query_fields_get_a_400_in_the_api_error_shape(client):
    query = urlencode({f"q{i}": "v" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)})
    response = client.get(f"/api/v1/status?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "too_many_fields"
    assert error["details"] == {"max_fields": settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}


def test_a_form_value_over_the_length_limit_is_rejected_not_truncated(client, user):
    # The right password followed by extra characters: truncating would sign the person in.
    padded = STRONG_PASSWORD + "x" * settings.MAX_FIELD_VALUE_LENGTH
    response = client.post("/accounts/login/", {"login": user.email, "password": padded})
    assert response.status_code == 400
    assert f"longer than {settings.MAX_FIELD_VALUE_LENGTH} characters" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_value_at_the_length_limit_is_accepted(client, user):
    at_limit = "x" * settings.MAX_FIELD_VALUE_LENGTH
    response = client.post("/accounts/login/", {"login": user.email, "password": at_limit})
    assert response.status_code == 200  # the form again: wrong password, not a refused request


def test_a_query_value_over_the_length_limit_gets_a_400_in_the_api_error_shape(client):
    long_value = "q" * (settings.MAX_FIELD_VALUE_LENGTH + 1)
    response = client.get("/api/v1/status", {"search": long_value})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "field_too_long",
        "message": (
            f"A value you sent is longer than {settings.MAX_FIELD_VALUE_LENGTH} characters."
            " Shorten it and try again."
        ),
        "details": {"field": "search", "max_length": settings.MAX_FIELD_VALUE_LENGTH},
    }


def test_a_malformed_multipart_body_gets_a_400(client):
    response = client.generic(
        "POST",
        "/accounts/login/",
        b"--nope\r\ngarbage",
        content_type="multipart/form-data; boundary=",
    )
    assert response.status_code == 400
    assert "could not be read" in response.content.decode()


@override_settings(DATA_UPLOAD_MAX_NUMBER_FILES=2)
def test_too_many_files_get_a_400(client):
    files = {f"file{i}": SimpleUploadedFile(f"f{i}.txt", b"data") for i in range(3)}
    response = client.post("/accounts/login/", files)
    assert response.status_code == 400
    assert "too many files" in response.content.decode()
