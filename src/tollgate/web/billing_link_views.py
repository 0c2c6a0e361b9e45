"""Where the signed links of the operator's product lead (``integrations.links``): a checkout or
the billing pages, signed in as the link's customer, and a receipt PDF without signing in."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import login, logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_safe

from tollgate.billing import selectors
from tollgate.billing.invoice_pdf import invoice_pdf_render
from tollgate.core.errors import TollgateError
from tollgate.integrations.links import receipt_pdf_redeem, signed_link_redeem
from tollgate.web.billing_checkout_views import PROMOTION_CODE_PARAMETER

# Where the operator's product wants the customer back: set by a checkout or portal link.
RETURN_SESSION_KEY = "integrations_return"


@require_safe
def signed_link(request: HttpRequest, token: str) -> HttpResponse:
    """Use a checkout or portal link: sign in the account it names (whoever was signed in before
    is signed out) and go to the checkout of its price, with its promotion code filled in, or to
    the billing dashboard."""
    try:
        redeemed = signed_link_redeem(token=token)
    except TollgateError as exc:
        return render(request, "billing/link_invalid.html", {"message": exc.message}, status=400)
    if request.user.is_authenticated and request.user.pk != redeemed.user.pk:
        logout(request)
    if not request.user.is_authenticated:
        login(request, redeemed.user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[RETURN_SESSION_KEY] = {
        "success": redeemed.success_url,
        "back": redeemed.cancel_url or redeemed.return_url,
    }
    response = (
        redirect(_checkout_url(redeemed.price_id, redeemed.promotion_code))
        if redeemed.kind == "checkout" and redeemed.price_id
        else redirect("billing:dashboard")
    )
    response["Referrer-Policy"] = "no-referrer"  # the link is a credential: keep it out of Referer
    return response


def _checkout_url(price_id: str, promotion_code: str | None) -> str:
    url = reverse("billing:checkout", args=[price_id])
    if promotion_code:
        url += "?" + urlencode({PROMOTION_CODE_PARAMETER: promotion_code})
    return url


@require_safe
def receipt_pdf(request: HttpRequest, token: str) -> HttpResponse:
    """An invoice's receipt PDF from a receipt link (for an hour, without signing in)."""
    try:
        invoice = receipt_pdf_redeem(token=token)
    except TollgateError as exc:
        return render(request, "billing/link_invalid.html", {"message": exc.message}, status=400)
    receipt = selectors.invoice_receipt(customer=invoice.customer, public_id=invoice.public_id)
    brand = settings.TOLLGATE_BRAND
    body = invoice_pdf_render(
        receipt=receipt, brand_name=brand["name"], support_email=brand["support_email"]
    )
    response = HttpResponse(body, content_type="application/pdf")
    name = invoice.number or invoice.public_id
    response["Content-Disposition"] = f'attachment; filename="invoice-{name}.pdf"'
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, no-store"
    return response
