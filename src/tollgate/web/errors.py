"""Django's error handlers (400, 403, 404, 500, CSRF failure), answered in the house shape.

The responses themselves are built by :mod:`tollgate.core.error_responses` (re-exported here for the
views), so middleware outside the web app answers the same way.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from tollgate.core.error_responses import error_response, from_exception, wants_json

__all__ = [
    "bad_request",
    "csrf_failure",
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


def server_error(request: HttpRequest) -> HttpResponse:
    return error_response(request, 500)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return error_response(
        request,
        403,
        code="csrf_failed",
        message="Your form expired or came from another site. Reload the page and submit it again.",
    )
