from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable

import structlog
from django.http import HttpRequest, HttpResponse

from tollgate.core import context
from tollgate.core.redaction import scrub_text
from tollgate.ops import instrumentation, metrics
from tollgate.ops.paths import redacted_path
from tollgate.security.client_ip import client_ip

log = structlog.get_logger("tollgate.request")

REQUEST_ID_HEADER = "X-Request-ID"
_WELL_FORMED_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")


def request_id_accepted(candidate: str) -> bool:
    """Whether a caller's request id is used as is: 8-64 characters of ``[A-Za-z0-9._:-]``, and
    nothing the log scrubber would mask (a run of 13 digits reads like a card number), so the id in
    the logs is always the id the caller sent."""
    return bool(_WELL_FORMED_REQUEST_ID.fullmatch(candidate)) and scrub_text(candidate) == candidate


def new_request_id() -> str:
    """24 random hex characters, never one the log scrubber would mask."""
    while True:
        candidate = secrets.token_hex(12)
        if request_id_accepted(candidate):
            return candidate


class RequestContextMiddleware:
    """Gives every request an id (the caller's ``X-Request-ID`` when well-formed, else a new one),
    binds it with the client IP and user agent for logs and audit events, echoes it in the response,
    and logs and counts one line per request (and the requests in flight; the connection pool's
    statistics are sampled as requests end).

    The logged path has secrets in route parameters redacted (see :mod:`tollgate.ops.paths`); the
    query string is never logged.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if request_id_accepted(incoming) else new_request_id()
        request.request_id = request_id  # type: ignore[attr-defined]
        token = context.bind(
            context.RequestContext(
                request_id=request_id,
                ip=client_ip(request),
                user_agent=request.headers.get("User-Agent", "")[:512],
            )
        )
        started = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        try:
            response = self.get_response(request)
            elapsed = time.perf_counter() - started
            response[REQUEST_ID_HEADER] = request_id
            match = getattr(request, "resolver_match", None)
            route = getattr(match, "view_name", None) or "unmatched"
            metrics.observe_request(
                method=request.method or "",
                route=route,
                status=response.status_code,
                seconds=elapsed,
            )
            log.info(
                "request",
                method=metrics.method_label(request.method or ""),
                path=redacted_path(
                    request.path_info, match=match, urlconf=getattr(request, "urlconf", None)
                ),
                route=route,
                status_code=response.status_code,
                duration_ms=round(elapsed * 1000, 1),
            )
            return response
        finally:
            metrics.IN_FLIGHT.dec()
            instrumentation.pool_stats_sample()
            context.reset(token)
