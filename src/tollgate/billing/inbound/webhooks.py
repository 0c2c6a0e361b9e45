"""The webhook endpoint: ``POST /webhooks/<gateway>/``, open for the configured gateway only.

It hands the raw body and the signature header to the inbox (verify, store once) and answers at
once; the worker does the rest. Errors come in the house JSON shape: 400 when the event is refused
(nothing is stored), 404 for any gateway but the configured one, 405 for anything but POST, 503
(with Retry-After) when the database did not take the event in time.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.http.request import RawPostDataException
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from tollgate.billing.errors import IntakeBusy, MethodNotAllowed, WebhookRejected
from tollgate.billing.gateways.base import EventRejected
from tollgate.billing.inbound import inbox
from tollgate.billing.inbound.handlers import signature_header_for
from tollgate.core.errors import NotFound, TollgateError


def _error(exc: TollgateError) -> JsonResponse:
    return JsonResponse(exc.as_dict(), status=exc.status)


@csrf_exempt  # signed by the gateway instead; no browser session is involved
def webhook_receive(request: HttpRequest, gateway: str) -> JsonResponse:
    header = signature_header_for(gateway)
    if gateway != settings.PAYMENT_GATEWAY or header is None:
        return _error(NotFound("No webhook endpoint for this gateway is active here."))
    if request.method != "POST":
        response = _error(MethodNotAllowed())
        response["Allow"] = "POST"
        return response
    try:
        body = request.body
    except RawPostDataException:
        # A multipart body was already parsed (and consumed) as a form; events are raw JSON.
        return _error(WebhookRejected(details={"reason": "the body must be raw JSON"}))
    try:
        receipt = inbox.event_receive(
            gateway=gateway, payload=body, signature=request.headers.get(header, "")
        )
    except EventRejected as exc:
        return _error(WebhookRejected(details={"reason": str(exc)}))
    except IntakeBusy as exc:
        response = _error(exc)
        response["Retry-After"] = "5"
        return response
    return JsonResponse({"received": True, "duplicate": not receipt.created})


app_name = "webhooks"
urlpatterns = [path("<slug:gateway>/", webhook_receive, name="receive")]
