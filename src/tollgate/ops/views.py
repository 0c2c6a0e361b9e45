from __future__ import annotations

import hmac
import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from tollgate.ops import metrics as metrics_module


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving requests (no dependencies checked)."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    key = "tollgate:readyz"
    token = str(time.monotonic_ns())
    cache.set(key, token, timeout=10)
    if cache.get(key) != token:
        raise RuntimeError("cache did not return the value just written")


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready for traffic: the database and the cache answer. 503 names the failing component."""
    checks: dict[str, str] = {}
    for name, check in (("database", _check_database), ("cache", _check_cache)):
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"failing: {type(exc).__name__}"
    failing = sorted(name for name, state in checks.items() if state != "ok")
    if failing:
        return JsonResponse(
            {
                "error": {
                    "code": "not_ready",
                    "message": f"Not ready: {', '.join(failing)} unavailable.",
                    "details": {"checks": checks},
                }
            },
            status=503,
        )
    return JsonResponse({"status": "ok", "checks": checks})


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics; with TOLLGATE_METRICS_TOKEN set, only for ``Authorization: Bearer <token>``."""
    expected = settings.METRICS_TOKEN
    if expected:
        supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            return JsonResponse(
                {"error": {"code": "not_authenticated", "message": "Send the metrics token.", "details": {}}},
                status=401,
            )
    body, content_type = metrics_module.render()
    return HttpResponse(body, content_type=content_type)
