from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from tollgate.ops import health
from tollgate.ops import metrics as metrics_module
from tollgate.ops.backup_status import backup_gauges_refresh


def _error(status: int, code: str, message: str, details: dict[str, object]) -> JsonResponse:
    return JsonResponse(
        {"error": {"code": code, "message": message, "details": details}}, status=status
    )


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving requests (no dependencies checked)."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready for traffic: the database and the cache answer, and (when required) a worker checked
    in recently. 503 names the failing components; the worker is reported either way."""
    results = health.readiness(health.readiness_checks())
    checks = {result.name: result.state for result in results}
    for result in results:
        metrics_module.READINESS.labels(component=result.name).set(1 if result.ok else 0)
    failing = health.readiness_failing(results, worker_required=settings.WORKER_REQUIRED)
    if failing:
        return _error(
            503,
            "not_ready",
            f"Not ready: {', '.join(failing)} unavailable.",
            {"checks": checks, "failing": failing},
        )
    return JsonResponse({"status": "ok", "checks": checks})


def _bearer_token(request: HttpRequest) -> str:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics; with TOLLGATE_METRICS_TOKEN set, only for ``Authorization: Bearer <token>``."""
    expected = settings.METRICS_TOKEN
    if expected and not hmac.compare_digest(_bearer_token(request).encode(), expected.encode()):
        response = _error(
            401,
            "not_authenticated",
            "Send the metrics token as 'Authorization: Bearer <token>'.",
            {},
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    backup_gauges_refresh()
    body, content_type = metrics_module.render()
    return HttpResponse(body, content_type=content_type)
