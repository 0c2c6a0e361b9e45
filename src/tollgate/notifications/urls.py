"""The providers' delivery-tracking webhooks (bounces, complaints), served by anymail's own views
under /webhooks/email/<provider>/tracking/ when the optional 'anymail' extra is installed.

Every request needs the HTTP basic auth of ANYMAIL_WEBHOOK_SECRET (checked by anymail); without a
secret configured the URLs answer 404, so an installation never takes unauthenticated reports that
would stop its mail.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path

app_name = "email_webhooks"


def _with_secret_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @functools.wraps(view)  # keeps csrf_exempt and login_not_required
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not getattr(settings, "ANYMAIL", {}).get("WEBHOOK_SECRET"):
            raise Http404("Email webhooks are off: ANYMAIL_WEBHOOK_SECRET is not set.")
        return view(request, *args, **kwargs)

    return guarded


def _tracking_patterns() -> list[URLPattern]:
    if importlib.util.find_spec("anymail") is None:
        return []
    from anymail.urls import urlpatterns as anymail_patterns

    return [
        path(str(pattern.pattern), _with_secret_only(pattern.callback), name=pattern.name)
        for pattern in anymail_patterns
        if isinstance(pattern, URLPattern)
        and pattern.name
        and pattern.name.endswith("_tracking_webhook")
        and str(pattern.pattern).endswith("/tracking/")
    ]


urlpatterns = _tracking_patterns()
