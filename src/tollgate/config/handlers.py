"""The web application's entry points: Django's own handlers, two of them.

Pages (everything a person opens in a browser) go through the whole of ``MIDDLEWARE``. The routes
in ``LEAN_ROUTES`` (health, metrics, the API and the inbound webhooks) are called by machines with
a key, a token or a signature, never with a session: they go through ``LEAN_MIDDLEWARE``, the same
chain without the middleware that only pages use (static files, sessions, CSRF, the signed-in user,
messages, allauth, session activity and lifetime, atomic account views). Everything else of the
chain (request ids and the request log line, security headers, request limits, control characters,
HTTPS, CORS, rate limits) runs on both, in the same order.

A path is routed by its first segment, the one Django's URL resolver matches first: a path under
``/api/`` can only reach a view whose pattern starts with ``api/``, so no page is ever served
without its middleware. Each handler is a complete Django handler with its own view, exception and
template-response hooks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler

_loading = threading.Lock()


def lean_route(path: str) -> bool:
    """Whether a request for ``path`` takes the lean middleware chain."""
    exact, prefixes = settings.LEAN_ROUTES
    return path in exact or path.startswith(prefixes)


@contextmanager
def lean_middleware() -> Iterator[None]:
    """``settings.MIDDLEWARE`` is the lean list meanwhile: Django's ``load_middleware`` reads that
    setting, and a lean handler builds its chain inside this (once, when it is created)."""
    with _loading:
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.LEAN_MIDDLEWARE
        try:
            yield
        finally:
            settings.MIDDLEWARE = full


class LeanChain:
    """Mixed into a Django handler: it builds its chain from ``LEAN_MIDDLEWARE``."""

    def load_middleware(self, is_async: bool = False) -> None:
        with lean_middleware():
            super().load_middleware(is_async)  # type: ignore[misc]


class _LeanWSGIHandler(LeanChain, WSGIHandler):
    pass


class _LeanASGIHandler(LeanChain, ASGIHandler):
    pass


StartResponse = Callable[..., Any]


class RoutedWSGIHandler:
    """WSGI: pages to Django's handler with every middleware, lean routes to the lean one."""

    def __init__(self) -> None:
        self.pages = WSGIHandler()
        self.lean = _LeanWSGIHandler()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        handler = self.lean if lean_route(environ.get("PATH_INFO", "")) else self.pages
        return handler(environ, start_response)


class RoutedASGIHandler:
    """ASGI: the same routing as ``RoutedWSGIHandler``; anything but HTTP goes to the pages'."""

    def __init__(self) -> None:
        self.pages = ASGIHandler()
        self.lean = _LeanASGIHandler()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        lean = scope.get("type") == "http" and lean_route(scope.get("path", ""))
        await (self.lean if lean else self.pages)(scope, receive, send)
