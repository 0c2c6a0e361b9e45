"""The customer's billing dashboard, and what every billing page shares: the signed-in account and
decline codes in plain words.

The billing pages are split by what the customer does: ``billing_checkout_views`` (subscribing),
``billing_card_views`` (the saved card), ``billing_invoice_views`` (receipts, PDFs, paying what is
owed) and ``billing_subscription_views`` (plan changes, cancel, resume). Views read through
``billing.selectors`` and write through ``billing.services``; a refused request (a ``TollgateError``)
is shown to the customer as a message or a form error in its own words. Cards are entered only on
the gateway's hosted form: the views start a setup session, send the browser there, and finish the
step when it comes back with the session's reference in the query.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from tollgate.accounts.models import User
from tollgate.billing import selectors
from tollgate.billing.entitlements import (
    GRANTING,
    UpgradeOffer,
    entitlements_for_customer,
    upgrade_offers_for,
)
from tollgate.billing.models import Customer, Invoice, Subscription
from tollgate.core.money import Money
from tollgate.integrations.customers import customer_ref_of
from tollgate.integrations.usage import usage_current
from tollgate.web.context_processors import payment_overdue_of

INVOICES_PER_PAGE = 20

# Card-network decline codes in plain words, each saying what to do next.
DECLINE_MESSAGES = {
    "generic_decline": "Your bank declined the payment without giving a reason.",
    "insufficient_funds": "The card does not have enough funds for this payment.",
    "expired_card": "The card has expired.",
    "incorrect_cvc": "The card's security code is incorrect.",
    "incorrect_number": "The card number is incorrect.",
    "invalid_number": "The card number is incorrect.",
    "lost_card": "The card was reported lost.",
    "stolen_card": "The card was reported stolen.",
    "card_not_supported": "This card does not support this kind of payment.",
    "currency_not_supported": "This card cannot be charged in this currency.",
    "do_not_honor": "Your bank declined the payment.",
    "fraudulent": "Your bank declined the payment as possibly fraudulent.",
    "processing_error": "The payment could not be processed because of an error at the bank.",
    "authentication_required": "Your bank asked for an authentication that was not completed.",
    "authentication_expired": "The payment was not confirmed with your bank in time.",
    "authentication_failed": "The payment could not be confirmed with your bank.",
    "payment_method_not_found": "The saved card can no longer be used.",
    "payment_method_required": "There is no card on file to charge.",
}
DECLINE_FALLBACK = "Your bank declined the payment."


def decline_message(code: str) -> str:
    """What a decline code means, in words a customer understands."""
    return DECLINE_MESSAGES.get(code, DECLINE_FALLBACK)


def signed_in_user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # every view here requires a signed-in account  # noqa: S101
    return user


def _offers(customer: Customer) -> list[UpgradeOffer]:
    """Upgrade prompts: features the plan lacks, and limits the reported usage nearly uses up."""
    ref = customer_ref_of(customer)
    current = entitlements_for_customer(customer_pk=customer.pk)
    totals = usage_current(customer=ref, entitlements=current).totals
    return upgrade_offers_for(current=current, usage=totals)


def _next_charge(subscription: Subscription | None) -> tuple[Any, Money] | None:
    """When the next renewal is charged and what (before any discount), with a scheduled price
    or seats change; None when nothing more is charged."""
    if (
        subscription is None
        or subscription.cancel_at_period_end
        or subscription.status not in GRANTING
    ):
        return None
    price = subscription.scheduled_price or subscription.price
    return subscription.current_period_end, Money(
        price.amount_for(subscription.seats_next), price.currency
    )


@require_safe
@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    customer = selectors.customer_for(user=request.user)
    subscription = selectors.subscription_current(customer=customer) if customer else None
    invoices = selectors.invoices_for(customer=customer) if customer else Invoice.objects.none()
    page = _invoice_page(invoices.only(*_INVOICE_ROW), request.GET.get("page"))
    granting = subscription is not None and subscription.status in GRANTING
    return render(
        request,
        "billing/dashboard.html",
        {
            "subscription": subscription,
            "card": selectors.payment_method_default(customer=customer) if customer else None,
            "open_invoices": selectors.invoices_open(customer=customer) if customer else [],
            "next_charge": _next_charge(subscription),
            "invoices": page,
            "offers": _offers(customer) if granting and customer else [],
            "can_cancel": granting
            and subscription is not None
            and not subscription.cancel_at_period_end,
            "payment_overdue": payment_overdue_of(subscription),
        },
    )


def _invoice_page(invoices: QuerySet[Invoice], number: str | None) -> Page[Invoice]:
    """The page of invoices asked for. The first page of an account with no more invoices than fit
    on it costs one query (the rows, and so their count); a later page also counts them."""
    if number in (None, "", "1"):
        rows = list(invoices[: INVOICES_PER_PAGE + 1])
        if len(rows) <= INVOICES_PER_PAGE:
            return Paginator(rows, INVOICES_PER_PAGE).get_page(1)
    return Paginator(invoices, INVOICES_PER_PAGE).get_page(number)


_INVOICE_ROW = (
    "id",
    "public_id",
    "number",
    "status",
    "currency",
    "total",
    "amount_paid",
    "finalized_at",
    "period_start",
    "period_end",
    # Read by the model's immutability guard when an instance is loaded.
    "customer_id",
    "subscription_id",
    "billing_reason",
)
