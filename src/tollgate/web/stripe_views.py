"""Tollgate's Stripe pages: the card form (SetupIntent + Stripe.js Elements) and the payment
confirmation step (3-D Secure), each reached by a signed link the adapter hands out.

The card number is typed into Stripe's element and sent by Stripe.js to Stripe only; these pages
receive nothing but the signed link. Served only while Stripe is the configured gateway (404
otherwise). The script is a static file (``tollgate/stripe-card.js``); Stripe.js is allowed by the
Content-Security-Policy only while Stripe is the gateway.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core.signing import BadSignature
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from tollgate.billing import services
from tollgate.billing.gateways.base import ChargeStatus, GatewayError
from tollgate.billing.gateways.stripe.adapter import StripeGateway
from tollgate.billing.gateways.stripe.conf import stripe_settings
from tollgate.billing.gateways.stripe.currencies import tollgate_amount
from tollgate.billing.gateways.stripe.links import action_link_read, setup_link_read
from tollgate.billing.gateways.stripe.objects import stripe_field
from tollgate.billing.models import PaymentAttempt
from tollgate.core.money import Money

View = Callable[..., HttpResponse]
_CONFIRMABLE = frozenset({"requires_action", "requires_payment_method", "requires_confirmation"})


def stripe_only(view: View) -> View:
    """Serve ``view`` only while Stripe is the configured gateway; 404 otherwise."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if settings.PAYMENT_GATEWAY != "stripe":
            raise Http404("The Stripe gateway is not active.")
        return view(request, *args, **kwargs)

    return guarded


def _unavailable(request: HttpRequest, *, title: str, message: str, status: int) -> HttpResponse:
    return render(
        request, "stripe/unavailable.html", {"title": title, "message": message}, status=status
    )


def _link_invalid(request: HttpRequest) -> HttpResponse:
    return _unavailable(
        request,
        title="This link is not valid",
        message="The link is unknown or has expired. Start again from your billing page.",
        status=404,
    )


def _stripe_down(request: HttpRequest) -> HttpResponse:
    return _unavailable(
        request,
        title="Payments are unavailable for a moment",
        message="We could not reach our payment processor. Try again in a few minutes.",
        status=503,
    )


def _page_context() -> dict[str, Any]:
    options = stripe_settings()
    return {
        "publishable_key": options.publishable_key,
        "stripe_js_url": options.js_url,
        "test_mode": options.publishable_key.startswith("pk_test_"),
    }


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


@stripe_only
@require_GET
def setup(request: HttpRequest, token: str) -> HttpResponse:
    """The card form of a setup intent; a saved card sends the browser back to Tollgate."""
    try:
        reference, return_url = setup_link_read(token)
    except BadSignature:
        return _link_invalid(request)
    try:
        intent = StripeGateway().setup_intent_get(reference=reference)
    except GatewayError:
        return _stripe_down(request)
    done_url = _with_query(return_url, setup_intent=reference, redirect_status="succeeded")
    if intent.status == "succeeded":
        return redirect(done_url)
    if intent.status == "canceled":
        return _unavailable(
            request,
            title="This card link was closed",
            message="Start again from your billing page to add a card.",
            status=410,
        )
    response = render(
        request,
        "stripe/setup.html",
        {**_page_context(), "client_secret": intent.client_secret, "return_url": done_url},
    )
    # The page carries a client secret: never cached, never sent on as a referrer.
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


def _intent_for(token: str) -> str:
    try:
        return action_link_read(token)
    except BadSignature as exc:
        raise Http404("unknown confirmation link") from exc


@stripe_only
@require_GET
def authenticate(request: HttpRequest, token: str) -> HttpResponse:
    """The customer confirms a payment their bank wants authenticated, with Stripe.js."""
    try:
        reference = _intent_for(token)
        intent = StripeGateway().payment_intent_get(reference=reference)
    except Http404:
        return _link_invalid(request)
    except GatewayError:
        return _stripe_down(request)
    if intent.status not in _CONFIRMABLE:
        return redirect("stripe:authenticate_done", token=token)
    method = stripe_field(intent, "payment_method") or ""
    response = render(
        request,
        "stripe/authenticate.html",
        {
            **_page_context(),
            "amount": Money(
                tollgate_amount(amount=int(intent.amount), currency=str(intent.currency)),
                str(intent.currency).upper(),
            ).format(),
            "client_secret": intent.client_secret,
            "payment_method": method if isinstance(method, str) else method.id,
            "done_url": reverse("stripe:authenticate_done", args=[token]),
        },
    )
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


@stripe_only
@require_GET
def authenticate_done(request: HttpRequest, token: str) -> HttpResponse:
    """Where the confirmation ends: Tollgate records what Stripe says now and tells the customer."""
    try:
        reference = _intent_for(token)
    except Http404:
        return _link_invalid(request)
    payment = PaymentAttempt.objects.filter(gateway="stripe", gateway_reference=reference).first()
    if payment is None:
        return _link_invalid(request)
    payment = services.payment_reconcile(payment=payment)
    return render(
        request,
        "stripe/authenticate_done.html",
        {
            "amount": Money(payment.amount, payment.currency).format(),
            "succeeded": payment.status == ChargeStatus.SUCCEEDED,
            "waiting": payment.status not in (ChargeStatus.SUCCEEDED, ChargeStatus.FAILED),
        },
    )
