"""The saved card: replace it on the gateway's hosted form; a new card pays what is open at once."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from tollgate.billing import selectors, services
from tollgate.billing.errors import PaymentMethodNotFound
from tollgate.billing.gateways.registry import gateway_get
from tollgate.billing.models import Customer
from tollgate.billing.states import PaymentStatus
from tollgate.web.billing_views import decline_message, signed_in_user


def hosted_setup_redirect(
    request: HttpRequest, customer: Customer, return_view: str
) -> HttpResponseRedirect:
    """Send the browser to the gateway's hosted card form, which comes back to ``return_view``."""
    session = services.payment_method_setup_start(
        customer=customer, return_url=request.build_absolute_uri(reverse(return_view))
    )
    return HttpResponseRedirect(session.url, status=303)


@require_http_methods(["GET", "POST"])
@login_required
def payment_method(request: HttpRequest) -> HttpResponse:
    """The saved card: replace it on the hosted form. A new card pays what is open at once."""
    user = signed_in_user(request)
    if request.method == "POST":
        return hosted_setup_redirect(
            request, services.customer_get_or_create(user=user), "billing:payment_method"
        )
    reference = gateway_get().setup_return_reference(query=request.GET)
    if reference:
        return _card_attach(request, reference)
    customer = selectors.customer_for(user=user)
    return render(
        request,
        "billing/payment_method.html",
        {
            "card": selectors.payment_method_default(customer=customer) if customer else None,
            "open_invoices": selectors.invoices_open(customer=customer) if customer else [],
        },
    )


def _card_attach(request: HttpRequest, reference: str) -> HttpResponse:
    user = signed_in_user(request)
    customer = services.customer_get_or_create(user=user)
    try:
        method = services.payment_method_attach(
            customer=customer, setup_reference=reference, actor=user
        )
    except PaymentMethodNotFound:
        messages.error(request, "Your card was not saved. Try again, or use another card.")
        return redirect("billing:payment_method")
    messages.success(
        request,
        f"Your {method.brand.capitalize()} ending in {method.last4} is now the card we charge.",
    )
    # The card may have been attached already, when the gateway's event about it was processed
    # first: what it paid is read from its payments, not from a before-and-after comparison.
    still_open = selectors.invoices_open(customer=customer)
    paid = selectors.invoices_paid_with(payment_method=method)
    if paid:
        numbers = ", ".join(invoice.number or invoice.public_id for invoice in paid)
        messages.success(request, f"Thank you: invoice {numbers} is paid.")
    subscription = selectors.subscription_current(customer=customer)
    if still_open and subscription is not None:
        payment = selectors.payment_latest(subscription=subscription)
        if payment is not None and payment.status == PaymentStatus.FAILED:
            messages.error(
                request,
                f"The new card could not be charged: {decline_message(payment.decline_code)} "
                "Try another card.",
            )
        elif payment is not None and payment.status == PaymentStatus.REQUIRES_ACTION:
            messages.warning(
                request, "Your bank needs you to confirm the payment: see your billing page."
            )
    return redirect("billing:dashboard")
