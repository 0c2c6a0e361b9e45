from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable

import structlog
from django.http import HttpRequest, HttpResponse

from tollgate.core import context
from tollgate.ops import metrics
from tollgate.security.client_ip import client_ip

log = structlog.get_logger("tollgate.request")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


class RequestContextMiddleware:
    """Gives every request an id (the caller's ``X-Request-ID`` when well-formed, else a new one),
    binds it with the client IP and user agent for logs and audit events, echoes it in the response,
    and logs and counts one line per request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else secrets.token_hex(12)
        ip = client_ip(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        token = context.bind(
            context.RequestContext(
                request_id=request_id,
                ip=ip,
                user_agent=request.headers.get("User-Agent", "")[:512],
            )
        )
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            context.reset(token)
        elapsed = time.perf_counter() - started
        response["X-Request-ID"] = request_id
        route = getattr(getattr(request, "resolver_match", None), "view_name", None) or "unmatched"
        metrics.observe_request(
            method=request.method or "", route=route, status=response.status_code, seconds=elapsed
        )
        log.info(
            "request",
            request_id=request_id,
            method=request.method,
            path=request.path,
            route=route,
            status_code=response.status_code,
            duration_ms=round(elapsed * 1000, 1),
        )
        return response
