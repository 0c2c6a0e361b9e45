"""Error responses in the house shape: the one place that turns a failure into a response.

Paths under /api/ get the house JSON shape (``{"error": {"code", "message", "details"}}``);
everything else the error page (template ``errors/error.html``, shipped by the web app). Neither
shows internals. Lives in core so that middleware below the web layer (security) answers in the
same shape without importing the web app; ``tollgate.web.errors`` holds Django's error handlers.
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
