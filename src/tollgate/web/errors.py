"""Error pages and JSON errors: one place that turns failures into responses.

Paths under /api/ get the house JSON shape; everything else a page. Neither shows internals.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from tollgate.core.errors import TollgateError

_TITLES = {
    400: ("Bad request", "The request could not be understood. Go back and try again."),
    403: (
        "Forbidden",
        "You don't have access to this page. If you think you should, sign in again.",
    ),
    404: (
        "Page not found",
        "There is nothing at this address. Check the link or start from the home page.",
    ),
    413: ("Request too large", "What you sent is larger than we accept. Send less and try again."),
    429: ("Too many requests", "Slow down a little: wait a moment, then try again."),
    500: ("Something went wrong", "We have been notified. Please try again in a few minutes."),
    503: ("Temporarily unavailable", "We're having trouble right now. Please try again shortly."),
}
_CODES = {
    400: "bad_request",
    403: "permission_denied",
    404: "not_found",
    413: "payload_too_large",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def error_response(
    request: HttpRequest,
    status: int,
    *,
    code: str | None = None,
    message: str | None = None,
    details: dict[str, Any] | None = None,
) -> HttpResponse:
    title, default_message = _TITLES.get(status, _TITLES[500])
    text = message or default_message
    if wants_json(request):
        body = {
            "error": {
                "code": code or _CODES.get(status, "error"),
                "message": text,
                "details": details or {},
            }
        }
        return JsonResponse(body, status=status)
    html = render_to_string(
        "errors/error.html",
        {
            "status": status,
            "title": title,
            "message": text,
            "brand": settings.TOLLGATE_BRAND,
            "request_id": getattr(request, "request_id", ""),
        },
    )
    return HttpResponse(html, status=status)


def from_exception(request: HttpRequest, exc: TollgateError) -> HttpResponse:
    return error_response(
        request, exc.status, code=exc.code, message=exc.message, details=exc.details
    )


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
