"""The security middleware: response headers, addresses no page has, request size limits and rate
limits.

Order in ``settings.MIDDLEWARE`` matters: SecurityHeadersMiddleware sits outside everything that can
answer early (404, 413, 429, error pages), so every response gets its headers;
RequestLimitsMiddleware refuses oversized requests before anything parses them, then
ControlCharactersMiddleware refuses addresses no page has before anything resolves them;
RateLimitMiddleware runs after authentication and URL
resolution, so it can count per account and per endpoint.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, HttpResponseBase, UnreadablePostError
from django.http.multipartparser import MultiPartParserError

from tollgate.core.error_responses import error_response, from_exception
from tollgate.core.errors import RateLimited
from tollgate.security import endpoints, known_device, metrics
from tollgate.security.headers import PERMISSIONS_POLICY, content_security_policy, new_nonce
from tollgate.security.policies import POLICIES
from tollgate.security.ratelimit import Decision, limiter

log = structlog.get_logger("tollgate.security")

GetResponse = Callable[[HttpRequest], HttpResponseBase]

_DIGITS = re.compile(r"^[0-9]+$")
# No address Tollgate hands out has a control character, and PostgreSQL refuses NUL in text outright
# (an error, not "no such row"). A query string may carry tab and line breaks (a text area of a GET
# form); they are harmless.
_PATH_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_QUERY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Headers that advertise server software and help no one but an attacker picking exploits.
_REVEALING_HEADERS = ("Server", "X-Powered-By")


class SecurityHeadersMiddleware:
    """Gives each request a fresh CSP nonce (``request.csp_nonce``, used by templates as
    ``{{ csp_nonce }}``) and every response, whoever produced it, the security headers:
    Content-Security-Policy, X-Content-Type-Options, Referrer-Policy, Permissions-Policy,
    Cross-Origin-Opener-Policy, X-Frame-Options, and HSTS on HTTPS when configured."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        nonce = new_nonce()
        request.csp_nonce = nonce  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["Content-Security-Policy"] = content_security_policy(
            nonce=nonce, extra=settings.CSP_EXTRA, path=request.path
        )
        response["X-Content-Type-Options"] = "nosniff"
        response["X-Frame-Options"] = "DENY"  # matches frame-ancestors 'none', for older browsers
        # A view may tighten these (e.g. no-referrer on a page with a secret in its URL).
        response.headers.setdefault("Referrer-Policy", settings.SECURE_REFERRER_POLICY)
        response.headers.setdefault(
            "Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY
        )
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        if settings.SECURE_HSTS_SECONDS and request.is_secure():
            # Django's SecurityMiddleware adds HSTS too, but only to responses that pass through
            # it; a 413 is answered before it.
            response.headers.setdefault("Strict-Transport-Security", _hsts_value())
        for name in _REVEALING_HEADERS:
            if name in response:
                del response[name]
        return response


def _hsts_value() -> str:
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return value


class ControlCharactersMiddleware:
    """Refuses a request with a control character (NUL above all) in its path with a 404 (no page,
    no object has such an address) and one with a control character in a query parameter's name or
    value with a 400 that says so. Such values never reach a URL pattern, a view or the database,
    which answers the same on SQLite and PostgreSQL: a made-up id is not found, never a 500."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if _PATH_CONTROL.search(request.path_info):
            return error_response(request, 404)
        for name, values in request.GET.lists():
            if _QUERY_CONTROL.search(name) or any(_QUERY_CONTROL.search(v) for v in values):
                return error_response(
                    request,
                    400,
                    code="control_character",
                    message=(
                        "The address has a control character in its query string, which no link"
                        " of ours has. Check the address and try again."
                    ),
                    details={} if _QUERY_CONTROL.search(name) else {"parameter": name[:100]},
                )
        return self.get_response(request)


class RequestLimitsMiddleware:
    """Refuses, before any view sees it, a request whose body exceeds ``MAX_REQUEST_BODY_BYTES``
    (413), whose Content-Length is not a number (400), with more fields than
    ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` (400), or with a query or form value longer than
    ``MAX_FIELD_VALUE_LENGTH`` (400). Values are rejected, never truncated.

    The body size is judged from Content-Length: under WSGI, Django reads no body without one. The
    reverse proxy should cap bodies as well, so oversized uploads never reach a web process.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Reading limits also trip when a view reads the body itself; answer those the same way."""
        return _limit_exceeded_response(request, exception)

    def _refusal(self, request: HttpRequest) -> HttpResponse | None:
        content_length = request.META.get("CONTENT_LENGTH") or ""
        if content_length:
            if not _DIGITS.match(content_length):
                return error_response(
                    request, 400, message="The Content-Length header is not a valid number."
                )
            if int(content_length) > settings.MAX_REQUEST_BODY_BYTES:
                return _too_large(request)
        try:
            # Parsing here, once, means the limits are enforced before CSRF checks or views read
            # the form, and whoever reads it later gets the parsed result.
            sources = [request.GET, request.POST] if request.method == "POST" else [request.GET]
            for source in sources:
                for name, values in source.lists():
                    if any(len(value) > settings.MAX_FIELD_VALUE_LENGTH for value in values):
                        return _field_too_long(request, name)
        except (MultiPartParserError, UnreadablePostError):
            return error_response(request, 400, message="The request body could not be read.")
        except (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent) as exc:
            return _limit_exceeded_response(request, exc)
        return None


def _too_large(request: HttpRequest) -> HttpResponse:
    limit = settings.MAX_REQUEST_BODY_BYTES
    return error_response(
        request,
        413,
        message=f"The request is larger than the {limit} bytes we accept. Send less and try again.",
        details={"max_bytes": limit},
    )


def _field_too_long(request: HttpRequest, name: str) -> HttpResponse:
    limit = settings.MAX_FIELD_VALUE_LENGTH
    return error_response(
        request,
        400,
        code="field_too_long",
        message=f"A value you sent is longer than {limit} characters. Shorten it and try again.",
        details={"field": name[:100], "max_length": limit},
    )


def _limit_exceeded_response(request: HttpRequest, exception: Exception) -> HttpResponse | None:
    if isinstance(exception, RequestDataTooBig):
        return _too_large(request)
    if isinstance(exception, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return error_response(
            request,
            400,
            code="too_many_fields",
            message=f"The request has more than {limit} fields. Send fewer and try again.",
            details={"max_fields": limit},
        )
    if isinstance(exception, TooManyFilesSent):
        return error_response(
            request, 400, code="too_many_files", message="The request has too many files."
        )
    return None


class RateLimitMiddleware:
    """Applies the rate-limit policies: ``api-ip`` to every request under /api/ (whose responses
    carry the RateLimit headers), and the per-endpoint checks of ``tollgate.security.endpoints``
    to POSTs. A refused request gets 429 with Retry-After and the RateLimit headers, as a page or
    the API's JSON error. Also writes the known-device cookie after a sign-in.

    Nothing is counted while ``settings.RATELIMIT_ENABLED`` is off.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        api_decision: Decision | None = None
        if (
            settings.RATELIMIT_ENABLED
            and request.path.startswith(endpoints.API_PATH_PREFIX)
            and not endpoints.sends_api_key(request)
        ):
            # Calls with an API key are counted per key by the API itself (and failed keys per
            # address), at the key's or plan's rates.
            api_decision = limiter().hit(endpoints.API_POLICY, endpoints.ip_of(request))
            if api_decision is not None and not api_decision.allowed:
                return rate_limited_response(request, api_decision)
        response = self.get_response(request)
        api_decision = getattr(request, "rate_limit_decision", None) or api_decision
        if api_decision is not None and response.status_code != 429:
            for name, value in api_decision.headers().items():
                response.headers.setdefault(name, value)
        known_device.attach(request, response)
        return response

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponseBase],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        if not settings.RATELIMIT_ENABLED:
            return None
        rate_limiter = limiter()
        for check in endpoints.checks_for(request):
            if check.counted:
                decision = rate_limiter.hit(check.policy, check.subject)
            else:
                decision = rate_limiter.peek(check.policy, check.subject)
            if decision is not None and not decision.allowed:
                return rate_limited_response(request, decision)
        return None


def rate_limited_response(request: HttpRequest, decision: Decision) -> HttpResponse:
    """The 429 for a refused request: the policy's advice, Retry-After and the RateLimit headers;
    counted in ``tollgate_rate_limited_total``."""
    policy = POLICIES[decision.policy]
    message = policy.message.format(wait=_duration(decision.reset_after))
    exc = RateLimited(
        message, retry_after=decision.reset_after, details={"policy": decision.policy}
    )
    response = from_exception(request, exc)
    response["Retry-After"] = str(decision.reset_after)
    for name, value in decision.headers().items():
        response[name] = value
    metrics.RATE_LIMITED.labels(policy=decision.policy).inc()
    log.warning(
        "rate_limited",
        policy=decision.policy,
        path=request.path,
        method=request.method,
        retry_after=decision.reset_after,
    )
    return response


def _duration(seconds: int) -> str:
    if seconds < 60:
        return "1 second" if seconds == 1 else f"{seconds} seconds"
    if seconds < 3600:
        minutes = math.ceil(seconds / 60)
        return "1 minute" if minutes == 1 else f"{minutes} minutes"
    hours = math.ceil(seconds / 3600)
    return "1 hour" if hours == 1 else f"{hours} hours"
