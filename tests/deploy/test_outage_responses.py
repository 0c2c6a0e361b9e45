"""A request that fails because the database or Redis did not answer gets 503 with Retry-After in
the house shape (callers and proxies retry it), never a 500; any other failure stays a 500."""

from __future__ import annotations

import json

import pytest
from django.db import InterfaceError, OperationalError
from django.test import RequestFactory
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tollgate.web import errors


def answer_while_handling(error: Exception, path: str = "/api/v1/customers"):
    """What Django's 500 handler answers, called as Django calls it: while handling ``error``."""
    request = RequestFactory().post(path)
    try:
        raise error
    except Exception:
        return errors.server_error(request)


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("connection to server at 127.0.0.1 failed: Connection refused"),
        InterfaceError("connection already closed"),
        RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        RedisTimeoutError("Timeout reading from socket"),
    ],
    ids=["database-down", "database-connection-closed", "redis-down", "redis-timeout"],
)
def test_an_unavailable_database_or_redis_is_a_503_asking_to_retry(error):
    response = answer_while_handling(error)
    assert response.status_code == 503
    assert response["Retry-After"] == str(errors.UNAVAILABLE_RETRY_AFTER_SECONDS)
    assert json.loads(response.content)["error"]["code"] == "service_unavailable"


def test_an_outage_behind_another_error_is_recognised():
    try:
        raise OperationalError("server closed the connection unexpectedly")
    except OperationalError as cause:
        wrapped = RuntimeError("the renewal could not be stored")
        wrapped.__cause__ = cause
    assert answer_while_handling(wrapped).status_code == 503


def test_pages_get_the_error_page_with_the_same_status():
    response = answer_while_handling(OperationalError("down"), path="/billing/")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")


def test_any_other_failure_stays_a_500():
    response = answer_while_handling(ValueError("a bug"))
    assert response.status_code == 500
    assert not response.has_header("Retry-After")
