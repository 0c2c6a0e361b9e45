"""The sandbox's hosted pages: the card form and the 3-D Secure step.

Served only while the sandbox is the configured gateway (404 otherwise), each under a TEST MODE
banner. The work is in ``billing/gateways/sandbox/hosted.py``; these views only read forms and
pick templates.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods

from tollgate.billing.errors import LinkUnavailable
from tollgate.billing.gateways.base import SetupStatus
from tollgate.billing.gateways.sandbox import hosted
from tollgate.billing.gateways.sandbox.models import SandboxCharge
from tollgate.core.money import Money
from tollgate.web.sandbox_forms import CardForm

View = Callable[..., HttpResponse]
_OUTCOMES = {"complete": True, "fail": False}


def sandbox_only(view: View) -> View:
    """Serve ``view`` only while the sandbox is the configured gateway; 404 otherwise."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if settings.PAYMENT_GATEWAY != "sandbox":
            raise Http404("The sandbox gateway is not active.")
        return view(request, *args, **kwargs)

    return guarded


def _unavailable(request: HttpRequest, exc: LinkUnavailable) -> HttpResponse:
    return render(
        request,
        "sandbox/unavailable.html",
        {"title": exc.title, "message": exc.message},
        status=exc.status,
    )


@sandbox_only
@sensitive_post_parameters("number", "cvc")
@sensitive_variables("form")
@require_http_methods(["GET", "POST"])
def setup(request: HttpRequest, reference: str) -> HttpResponse:
    """The hosted card form of a setup session; a saved card sends the browser back to Tollgate."""
    try:
        session = hosted.setup_session_open(reference=reference)
        form = CardForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            month, year = form.cleaned_data["expiry"]
            result = hosted.card_submit(
                session=session,
                number=form.cleaned_data["number"],
                exp_month=month,
                exp_year=year,
            )
            if result.status == SetupStatus.SUCCEEDED:
                return redirect(hosted.return_url_for(session=session))
            form.add_error(None, hosted.decline_message(result.failure_code))
    except LinkUnavailable as exc:
        return _unavailable(request, exc)
    return render(
        request, "sandbox/setup.html", {"form": form, "test_cards": hosted.TEST_CARD_GUIDE}
    )


@sandbox_only
@require_http_methods(["GET", "POST"])
def authenticate(request: HttpRequest, reference: str) -> HttpResponse:
    """The 3-D Secure step of a charge: the customer completes or fails the authentication."""
    problem = ""
    try:
        if request.method == "POST":
            outcome = request.POST.get("outcome", "")
            if outcome in _OUTCOMES:
                hosted.authentication_finish(reference=reference, authenticated=_OUTCOMES[outcome])
                return redirect("sandbox:authenticate_done", reference=reference)
            problem = "Choose whether the authentication completes or fails."
        charge = hosted.charge_awaiting_authentication(reference=reference)
    except LinkUnavailable as exc:
        return _unavailable(request, exc)
    return render(
        request,
        "sandbox/authenticate.html",
        {"amount": Money(charge.amount, charge.currency).format(), "problem": problem},
        status=400 if problem else 200,
    )


@sandbox_only
@require_GET
def authenticate_done(request: HttpRequest, reference: str) -> HttpResponse:
    """Where the 3-D Secure step ends: says how it went."""
    try:
        charge = hosted.charge_found(reference=reference)
    except LinkUnavailable as exc:
        return _unavailable(request, exc)
    if charge.status == SandboxCharge.Status.REQUIRES_ACTION:
        return redirect("sandbox:authenticate", reference=reference)
    return render(
        request,
        "sandbox/authenticate_done.html",
        {
            "amount": Money(charge.amount, charge.currency).format(),
            "succeeded": charge.status == SandboxCharge.Status.SUCCEEDED,
        },
    )
