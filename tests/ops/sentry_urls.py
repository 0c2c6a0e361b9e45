"""The project's URLs plus one view that fails, for the Sentry test (``ROOT_URLCONF`` override)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from tollgate.config.urls import handler400, handler403, handler404, handler500
from tollgate.config.urls import urlpatterns as project_urlpatterns

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]


class ChargeFailed(RuntimeError):
    pass


@csrf_exempt  # the request comes from the test, like a signed webhook would
def failing_view(request: HttpRequest, token: str) -> HttpResponse:
    card = request.POST.get("card_number", "")
    raise ChargeFailed(f"charge failed for card {card}")


urlpatterns = [
    path("sentry-test/fail/<str:token>/", failing_view, name="sentry_test_fail"),
    *project_urlpatterns,
]
