"""URL paths as they may be written to logs and error reports.

Some URLs carry a secret in the path itself: the email verification key
(``/accounts/confirm-email/<key>/``) and the password reset token
(``/accounts/password/reset/key/<uidb36>-<key>/``). The path is resolved against the URL
configuration and the values of route parameters with a sensitive name are replaced, so
``/accounts/confirm-email/MQ:1tK...:x9/`` is written as ``/accounts/confirm-email/[redacted]/``.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import Resolver404, ResolverMatch, resolve

from tollgate.core.redaction import REDACTED, is_sensitive_key, scrub_text


def _resolve(path: str, urlconf: str | None) -> ResolverMatch | None:
    # Also try with a trailing slash: CommonMiddleware answers "/x" with a redirect to "/x/"
    # before any view runs, and that request is logged too.
    candidates = (path,) if path.endswith("/") else (path, f"{path}/")
    for candidate in candidates:
        try:
            return resolve(candidate, urlconf)
        except Resolver404:
            continue
    return None


def redacted_path(
    path: str, *, match: ResolverMatch | None = None, urlconf: str | None = None
) -> str:
    """``path`` with the values of sensitive route parameters (``key``, ``token``...) redacted.

    ``match`` is the request's resolver match when there is one; otherwise the path is resolved here.
    Whatever the route, the result also goes through :func:`scrub_text`.
    """
    if match is None:
        match = _resolve(path, urlconf)
    if match is not None:
        for name, value in match.kwargs.items():
            if isinstance(value, str) and value and is_sensitive_key(name):
                path = path.replace(value, REDACTED)
    return scrub_text(path)


def redact_request_path_in(text: str, request: object) -> str:
    """``text`` with the raw path of ``request`` replaced by its redacted form.

    Django's own log lines name the path of a failing request ("Internal Server Error: /accounts/
    confirm-email/<key>/"); those records carry the request, so the path can be found and replaced.
    """
    if not isinstance(request, HttpRequest) or not request.path_info.strip("/"):
        return text
    prefix = request.path[: len(request.path) - len(request.path_info)]
    safe = prefix + redacted_path(
        request.path_info,
        match=getattr(request, "resolver_match", None),
        urlconf=getattr(request, "urlconf", None),
    )
    return text.replace(request.path, safe)
