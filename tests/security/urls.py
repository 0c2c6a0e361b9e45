"""Test-only URLs: the project's URLs plus views that fail in the ways the security layer handles."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from tollgate.config.urls import urlpatterns as project_urlpatterns

INTERNAL_DETAIL = "psycopg.OperationalError: password=hunter2 at /srv/tollgate/secret.py"


def explode(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(INTERNAL_DETAIL)


def read_body(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"read {len(request.body)} bytes")


def boastful(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("hello")
    response["Server"] = "Apache/2.4.1 (Unix)"
    response["X-Powered-By"] = "PHP/5.6"
    return response


urlpatterns = [
    path("test-only/boastful/", boastful),
    path("test-only/explode/", explode),
    path("api/test-only/explode/", explode),
    path("test-only/read-body/", read_body),
    path("api/test-only/read-body/", read_body),
    *project_urlpatterns,
]

handler400 = "tollgate.web.errors.bad_request"
handler403 = "tollgate.web.errors.permission_denied"
handler404 = "tollgate.web.errors.page_not_found"
handler500 = "tollgate.web.errors.server_error"
