from __future__ import annotations

from collections.abc import Callable
from typing import Any

from allauth.account.middleware import AccountMiddleware
from django.conf import settings
from django.contrib.auth import logout
from django.db import transaction
from django.http import HttpRequest, HttpResponse

from tollgate.core import clock

_STARTED = "tollgate_session_started"
_SEEN = "tollgate_session_seen"
# Refresh "last seen" at most this often, so reads don't turn into a session write per request.
_SEEN_RESOLUTION = 60


def session_mark_started(request: HttpRequest) -> None:
    """Start the lifetime clocks of a freshly signed-in session."""
    request.session[_STARTED] = request.session[_SEEN] = int(clock.now().timestamp())


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
