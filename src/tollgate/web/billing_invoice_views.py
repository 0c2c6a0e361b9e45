"""Invoices: the receipt page, its PDF, and paying an invoice still owed with the saved card."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe

from tollgate.billing import selectors, services
from tollgate.billing.invoice_pdf import invoice_pdf_render
from tollgate.billing.models import Customer
from tollgate.billing.states import PaymentStatus
from tollgate.core.errors import NotFound, TollgateError
from tollgate.web.billing_forms import PayInvoiceForm
from tollgate.web.billing_views import decline_message, signed_in_user


def _customer_or_404(request: HttpRequest) -> Customer:
    customer = selectors.customer_for(user=request.user)
    if customer is None:
        raise Http404("No billing account.")
    return customer


def _receipt(request: HttpRequest, invoice_id: str) -> selectors.InvoiceReceipt:
    try:
        return selectors.invoice_receipt(customer=_customer_or_404(request), public_id=invoice_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc


@require_safe
@login_required
def invoice(request: HttpRequest, invoice_id: str) -> HttpResponse:
    """An invoice's receipt: its lines, payments, refunds and totals (its owner only); an invoice
    still owed can be paid here with the saved card, or confirmed with the bank."""
    receipt = _receipt(request, invoice_id)
    card = (
        selectors.payment_method_default(customer=receipt.invoice.customer)
        if receipt.payable_now
        else None
    )
    return render(
        request,
        "billing/invoice.html",
        {
            "receipt": receipt,
            "card": card,
            "owed": receipt.invoice.total - receipt.invoice.amount_paid,
            "pay_form": PayInvoiceForm(owner=signed_in_user(request).public_id) if card else None,
        },
    )


@require_POST
@login_required
def invoice_pay(request: HttpRequest, invoice_id: str) -> HttpResponse:
    """Pay an invoice still owed now, with the saved card (on session: the customer is here). A
    second submission of the same form returns the first attempt's outcome."""
    user = signed_in_user(request)
    receipt = _receipt(request, invoice_id)
    back = redirect("billing:invoice", invoice_id=invoice_id)
    back.status_code = 303
    form = PayInvoiceForm(request.POST, owner=user.public_id)
    if not form.is_valid():
        messages.error(request, "This page was out of date. Check the invoice and pay again.")
        return back
    try:
        payment = services.invoice_pay(
            invoice=receipt.invoice,
            off_session=False,
            actor=user,
            idempotency_key=form.cleaned_data["idempotency_key"],
        )
    except TollgateError as exc:
        messages.error(request, exc.message)
        return back
    if payment.status == PaymentStatus.SUCCEEDED:
        messages.success(request, f"Invoice {receipt.invoice.number} is paid. Thank you.")
    elif payment.status == PaymentStatus.REQUIRES_ACTION:
        messages.info(request, "Your bank wants you to confirm this payment.")
    elif payment.status == PaymentStatus.FAILED:
        messages.error(request, f"{decline_message(payment.decline_code)} Try another card.")
    else:
        messages.info(request, "The payment is being processed; this page will show the outcome.")
    return back


@require_safe
@login_required
def invoice_pdf(request: HttpRequest, invoice_id: str) -> HttpResponse:
    receipt = _receipt(request, invoice_id)
    brand = settings.TOLLGATE_BRAND
    body = invoice_pdf_render(
        receipt=receipt, brand_name=brand["name"], support_email=brand["support_email"]
    )
    response = HttpResponse(body, content_type="application/pdf")
    name = receipt.invoice.number or receipt.invoice.public_id
    response["Content-Disposition"] = f'attachment; filename="invoice-{name}.pdf"'
    return response
