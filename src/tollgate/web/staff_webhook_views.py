"""Staff pages for outgoing webhooks: the endpoints, registering and editing one, enabling and
disabling, rotating its signing secret, and its recent deliveries with every attempt and a way to
resend one.

A signing secret is shown once, on the page that answers the request that made it (never stored in
the session or sent through a redirect); afterwards only a rotation gives a new one. Views only read
and call ``integrations.webhooks``, which checks the rules and audits every change.
"""

from __future__ import annotations

import datetime as dt
from typing import cast

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from tollgate.accounts.models import User
from tollgate.core.errors import TollgateError
from tollgate.integrations import webhooks
from tollgate.integrations.models import WebhookDelivery, WebhookEndpoint
from tollgate.web import errors
from tollgate.web.staff_tables import table_page
from tollgate.web.staff_views import staff_required
from tollgate.web.staff_webhook_forms import EndpointForm, RotateForm

ENDPOINT_SORTS = {"created": "created_at", "url": "url", "enabled": "enabled"}
DELIVERY_SORTS = {
    "created": "created_at",
    "status": "status",
    "attempts": "attempts",
    "next": "next_attempt_at",
}


def _staff(request: HttpRequest) -> User:
    return cast(User, request.user)


def _endpoint(endpoint_id: str) -> WebhookEndpoint | None:
    return WebhookEndpoint.objects.filter(public_id=endpoint_id).first()


def _refused(form: EndpointForm, exc: TollgateError) -> None:
    """Show a service's refusal on the field it is about, or on the form."""
    field = exc.details.get("field")
    form.add_error(field if field in form.fields else None, exc.message)


def _endpoint_page(endpoint: WebhookEndpoint) -> HttpResponse:
    return redirect("staff:webhook_endpoint", endpoint_id=endpoint.public_id)


@require_safe
@staff_required
def webhook_endpoints(request: HttpRequest) -> HttpResponse:
    endpoints = table_page(
        webhooks.webhook_endpoints(),
        params=request.GET,
        sorts=ENDPOINT_SORTS,
        default="created",
        default_dir="asc",
        anchor="#endpoints",
    )
    return render(request, "staff/webhooks/list.html", {"endpoints": endpoints})


@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def webhook_create(request: HttpRequest) -> HttpResponse:
    form = EndpointForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            endpoint, secret = webhooks.webhook_endpoint_create(
                url=form.cleaned_data["url"],
                event_types=form.cleaned_data["event_types"],
                description=form.cleaned_data["description"],
                actor=_staff(request),
            )
        except TollgateError as exc:
            _refused(form, exc)
        else:
            return render(
                request,
                "staff/webhooks/secret.html",
                {"endpoint": endpoint, "secret": secret, "created": True},
            )
    status = 422 if request.method == "POST" else 200
    return render(
        request, "staff/webhooks/form.html", {"form": form, "endpoint": None}, status=status
    )


@require_safe
@staff_required
def webhook_endpoint(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint(endpoint_id)
    if endpoint is None:
        return errors.error_response(request, 404)
    return render(
        request,
        "staff/webhooks/endpoint.html",
        {
            "endpoint": endpoint,
            "deliveries": table_page(
                webhooks.webhook_deliveries(endpoint=endpoint),
                params=request.GET,
                sorts=DELIVERY_SORTS,
                default="created",
                anchor="#deliveries",
            ),
        },
    )


@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def webhook_edit(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint(endpoint_id)
    if endpoint is None:
        return errors.error_response(request, 404)
    if request.method != "POST":
        form = EndpointForm(
            initial={
                "url": endpoint.url,
                "description": endpoint.description,
                "event_types": endpoint.event_types,
            }
        )
        return render(request, "staff/webhooks/form.html", {"form": form, "endpoint": endpoint})
    form = EndpointForm(request.POST)
    if form.is_valid():
        try:
            webhooks.webhook_endpoint_update(
                endpoint=endpoint,
                url=form.cleaned_data["url"],
                description=form.cleaned_data["description"],
                event_types=form.cleaned_data["event_types"],
                actor=_staff(request),
            )
        except TollgateError as exc:
            _refused(form, exc)
        else:
            messages.success(request, "The endpoint is saved.")
            return _endpoint_page(endpoint)
    return render(
        request, "staff/webhooks/form.html", {"form": form, "endpoint": endpoint}, status=422
    )


@require_POST
@staff_required
def webhook_enable(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    return _switch(request, endpoint_id, enabled=True)


@require_POST
@staff_required
def webhook_disable(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    return _switch(request, endpoint_id, enabled=False)


def _switch(request: HttpRequest, endpoint_id: str, *, enabled: bool) -> HttpResponse:
    endpoint = _endpoint(endpoint_id)
    if endpoint is None:
        return errors.error_response(request, 404)
    webhooks.webhook_endpoint_update(endpoint=endpoint, enabled=enabled, actor=_staff(request))
    messages.success(
        request,
        "The endpoint is enabled; deliveries that were waiting are being sent."
        if enabled
        else "The endpoint is disabled; new events are not sent to it until it is enabled.",
    )
    return _endpoint_page(endpoint)


@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def webhook_rotate(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint(endpoint_id)
    if endpoint is None:
        return errors.error_response(request, 404)
    if request.method != "POST":
        form = RotateForm(initial={"replacing": webhooks.secret_fingerprint(endpoint)})
        return render(request, "staff/webhooks/rotate.html", {"form": form, "endpoint": endpoint})
    form = RotateForm(request.POST)
    if form.is_valid():
        try:
            secret = webhooks.webhook_endpoint_secret_rotate(
                endpoint=endpoint,
                overlap=dt.timedelta(hours=form.cleaned_data["overlap_hours"]),
                replacing=form.cleaned_data["replacing"],
                actor=_staff(request),
            )
        except TollgateError as exc:
            messages.error(request, exc.message)
            return _endpoint_page(endpoint)
        endpoint.refresh_from_db()
        return render(
            request,
            "staff/webhooks/secret.html",
            {"endpoint": endpoint, "secret": secret, "created": False},
        )
    return render(
        request, "staff/webhooks/rotate.html", {"form": form, "endpoint": endpoint}, status=422
    )


@require_POST
@staff_required
def webhook_resend(request: HttpRequest, endpoint_id: str, event_id: str) -> HttpResponse:
    delivery = (
        WebhookDelivery.objects.select_related("endpoint", "event")
        .filter(endpoint__public_id=endpoint_id, event__public_id=event_id)
        .first()
    )
    if delivery is None:
        return errors.error_response(request, 404)
    try:
        webhooks.webhook_delivery_resend(delivery=delivery, actor=_staff(request))
    except TollgateError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"{event_id} is being sent again; reload in a moment to see the attempt.",
        )
    return _endpoint_page(delivery.endpoint)
