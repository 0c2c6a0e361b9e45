"""Error reporting to Sentry, with personal data off and every event scrubbed before it leaves.

What is sent, and what is not:

- Personal data stays off: the SDK's default (``send_default_pii`` unset, which every 2.x SDK treats
  as off; newer SDKs deprecate passing it). No user, no cookies, no client IP; sensitive headers are
  filtered by the SDK before our own pass.
- No request bodies (``max_request_body_size="never"``) and no stack frame local variables
  (``include_local_variables=False``): either can hold a password, a card number or a token under any
  name, which no key-based scrubber can recognise.
- Integrations are listed, not auto-enabled: the auto-enabled Redis integration writes cache keys into
  breadcrumbs (cached sessions are keyed by the session id), and the Huey integration adds a
  ``sentry_headers`` argument to every queued task, which a worker without Sentry would choke on.
  Errors in tasks still arrive through the logging integration (Huey logs them with the traceback).
- Every event, transaction and breadcrumb goes through :func:`tollgate.core.redaction.scrub`
  (sensitive keys redacted; emails, card-like numbers, bearer credentials, API keys and URL passwords
  masked in text). The request URL, and the raw path in Django's own log lines, have secret route
  parameters (verification keys, reset tokens) redacted, like the request log.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sentry_sdk
from django.http import HttpRequest
from sentry_sdk.integrations.django import DjangoIntegration

from tollgate import __version__
from tollgate.core.redaction import scrub
from tollgate.ops.paths import redact_request_path_in, redacted_path


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    return urlunsplit(parts._replace(path=redacted_path(parts.path)))


def _replace_text(value: Any, request: HttpRequest, *, depth: int = 0) -> Any:
    if depth > 12:
        return value
    if isinstance(value, str):
        return redact_request_path_in(value, request)
    if isinstance(value, dict):
        return {key: _replace_text(item, request, depth=depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_replace_text(item, request, depth=depth + 1) for item in value)
    return value


def _without_logged_request_path(payload: dict[str, Any], hint: dict[str, Any] | None) -> Any:
    """Events and breadcrumbs made from Django's log records name the request's raw path."""
    request = getattr((hint or {}).get("log_record"), "request", None)
    if isinstance(request, HttpRequest):
        return _replace_text(payload, request)
    return payload


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Redact sensitive keys anywhere in the event and mask emails, cards and keys in its text."""
    request = event.get("request")
    if isinstance(request, dict) and isinstance(request.get("url"), str):
        event = {**event, "request": {**request, "url": _redact_url(request["url"])}}
    scrubbed: dict[str, Any] = scrub(_without_logged_request_path(event, hint))
    return scrubbed


def scrub_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Breadcrumbs are scrubbed as they are recorded, not only when an event is sent."""
    scrubbed: dict[str, Any] = scrub(_without_logged_request_path(crumb, hint))
    return scrubbed


def sentry_release(configured: str) -> str:
    """The release events are reported under: ``SENTRY_RELEASE`` when set, else the version."""
    return configured.strip() or f"tollgate@{__version__}"


def init_sentry(
    *, dsn: str, environment: str, traces_sample_rate: float, release: str = ""
) -> None:
    """Start the SDK with ``SENTRY_ENVIRONMENT`` and ``SENTRY_RELEASE`` (see :func:`sentry_release`)."""
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=sentry_release(release),
        auto_enabling_integrations=False,
        integrations=[DjangoIntegration(transaction_style="url")],
        traces_sample_rate=traces_sample_rate,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=scrub_event,  # type: ignore[arg-type]
        before_send_transaction=scrub_event,  # type: ignore[arg-type]
        before_breadcrumb=scrub_breadcrumb,
    )
