from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def branding(request: HttpRequest) -> dict[str, Any]:
    return {
        "brand": settings.TOLLGATE_BRAND,
        "test_mode": settings.PAYMENT_GATEWAY == "sandbox",
        "csp_nonce": getattr(request, "csp_nonce", ""),
    }
