"""The ceiling the pages benchmark compares Tollgate with: a bare Django hello-world (no
middleware, no database, one view answering ``Hello``), served by the same server with the same
flags as Tollgate. WSGI application: ``_hello:application`` (with bench/ on the path)."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    SECRET_KEY=secrets.token_urlsafe(50),
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATABASES={},
    LOGGING_CONFIG=None,
)


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"Hello", content_type="text/plain")


urlpatterns = [path("", hello), path("healthz", hello)]

application = get_wsgi_application()
