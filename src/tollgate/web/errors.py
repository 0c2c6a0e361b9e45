"""Django's error handlers (400, 403, 404, 500, CSRF failure), answered in the house shape.

The responses themselves are built by :mod:`tollgate.core.error_responses` (re-exported here for the
views), so middleware outside the web app answers the same way.
"""

from __future__ import annotations

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tollgate.core.error_responses import error_response, from_exception, wants_json

__all__ = [
    "bad_request",
    "csrf_failure",
    "dependency_unavailable",
    "error_response",
    "from_exception",
    "page_not_found",
    "permission_denied",
    "server_error",
    "wants_json",
]


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 403)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 404)


# Seconds a caller is asked to wait when the database or Redis did not answer.
UNAVAILABLE_RETRY_AFTER_SECONDS = 5
_UNAVAILABLE = (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError)


def dependency_unavailable(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is the database or Redis not answering: unreachable,
    restarting, out of pooled connections, or a transient conflict the database asked to retry."""
    while exc is not None:
        if isinstance(exc, _UNAVAILABLE):
            return True
        exc = exc.__cause__
    return False


def server_error(request: HttpRequest) -> HttpResponse:
    # An outage of the database or Redis (a restart, a failover) is no bug: 503 with Retry-After,
    # which callers retry, for as long as it lasts. Django calls this while handling the error.
    if dependency_unavailable(sys.exc_info()[1]):
        response = error_response(request, 503)
        response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_SECONDS)
        return response
    return error_response(request, 500)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return error_response(
        request,
        403,
        code="csrf_failed",
        message="Your form expired or came from another site. Reload the page and submit it again.",
    )
