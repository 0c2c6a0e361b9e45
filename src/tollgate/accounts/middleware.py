from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from allauth.account.adapter import get_adapter
from allauth.account.middleware import AccountMiddleware
from allauth.usersessions import app_settings as usersessions_settings
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib.auth import logout
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse

from tollgate.core import clock

_STARTED = "tollgate_session_started"
_SEEN = "tollgate_session_seen"
_TRACKED = "tollgate_session_tracked"
# Refresh "last seen" at most this often, so reads don't turn into a session write per request.
_SEEN_RESOLUTION = 60


def session_mark_started(request: HttpRequest) -> None:
    """Start the lifetime clocks of a freshly signed-in session (allauth records the session's
    activity at sign-in: the next is due a minute later)."""
    now = int(clock.now().timestamp())
    request.session[_STARTED] = request.session[_SEEN] = now
    request.session[_TRACKED] = [now, _client_fingerprint(request)]


class SessionLifetimeMiddleware:
    """Ends a signed-in session after ``SESSION_IDLE_TIMEOUT`` seconds without a request, or
    ``SESSION_ABSOLUTE_LIFETIME`` seconds after sign-in, whichever comes first."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            now = int(clock.now().timestamp())
            session = request.session
            started: int | None = session.get(_STARTED)
            seen: int = session.get(_SEEN, started) or now
            if started is None:
                session[_STARTED] = session[_SEEN] = now
            elif (
                now - started > settings.SESSION_ABSOLUTE_LIFETIME
                or now - seen > settings.SESSION_IDLE_TIMEOUT
            ):
                logout(request)  # flushes the server-side session
                request.session_expired = True  # type: ignore[attr-defined]
            elif now - seen >= _SEEN_RESOLUTION:
                session[_SEEN] = now
        return self.get_response(request)


class UserSessionActivityMiddleware:
    """allauth's record of a signed-in session (last seen, address, browser; the sessions page),
    written when the address or browser changes and otherwise at most once a minute, instead of
    on every request (allauth's own middleware: five statements a request, a write among them)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        if (
            usersessions_settings.TRACK_ACTIVITY
            and session is not None
            and session.session_key
            and request.user.is_authenticated
        ):
            now = int(clock.now().timestamp())
            client = _client_fingerprint(request)
            tracked = session.get(_TRACKED)
            if (
                not isinstance(tracked, list)
                or len(tracked) != 2
                or tracked[1] != client
                or now - tracked[0] >= _SEEN_RESOLUTION
            ):
                UserSession.objects.create_from_request(request)
                session[_TRACKED] = [now, client]
        return self.get_response(request)


def _client_fingerprint(request: HttpRequest) -> str:
    """A short digest of what allauth records of the client (address and browser), so a change
    is noticed without keeping either in the session."""
    try:
        ip = get_adapter().get_client_ip(request) or ""
    except PermissionDenied:  # no address to be had (a test's force_login); allauth says so later
        ip = ""
    user_agent = request.META.get("HTTP_USER_AGENT", "")
    digest = hashlib.blake2b(f"{ip}\n{user_agent}".encode(), digest_size=8)
    return digest.hexdigest()


class AtomicAccountViewsMiddleware:
    """Runs allauth's state-changing views in one transaction, so the change and its audit record
    (written by signal receivers) commit together or not at all.

    The view runs from ``process_view``, where Django does not call ``process_exception`` hooks, so
    allauth's own exception handling (re-authentication redirects, immediate responses) is applied
    here, after the transaction has rolled back.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._allauth = AccountMiddleware(get_response)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        if not getattr(view_func, "__module__", "").startswith("allauth."):
            return None
        try:
            with transaction.atomic():
                return view_func(request, *view_args, **view_kwargs)
        except Exception as exc:
            response: HttpResponse | None = self._allauth.process_exception(request, exc)
            if response is None:
                raise
            return response
