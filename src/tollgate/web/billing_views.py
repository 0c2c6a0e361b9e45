"""The customer's billing pages: checkout, the billing dashboard, receipts, card replacement, plan
changes, cancellation and resumption.

Views read through ``billing.selectors`` and write through ``billing.services``; a refused request
(a ``TollgateError``) is shown to the customer as a message or a form error in its own words. Cards
are entered only on the gateway's hosted form: the views start a setup session, send the browser
there, and finish the step when it comes back with the session's reference in the query.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from tollgate.accounts.models import User
from tollgate.billing import selectors, services
from tollgate.billing.entitlements import (
    GRANTING,
    UpgradeOffer,
    entitlements_for_customer,
    upgrade_offers_for,
)
from tollgate.billing.errors import PaymentMethodNotFound, SubscriptionExists
from tollgate.billing.gateways.registry import gateway_get
from tollgate.billing.invoice_pdf import invoice_pdf_render
from tollgate.billing.models import Customer, Invoice, PaymentAttempt, Subscription
from tollgate.billing.previews import change_preview
from tollgate.billing.states import PaymentStatus, SubscriptionStatus
from tollgate.catalog.models import Price
from tollgate.catalog.selectors import plans_for_sale
from tollgate.core import clock
from tollgate.core.errors import IdempotencyKeyInProgress, NotFound, TollgateError
from tollgate.core.idempotency import form_token_redeem
from tollgate.integrations.customers import customer_ref_of
from tollgate.integrations.usage import usage_current
from tollgate.web.billing_forms import CancelForm, ChangePlanForm, CheckoutForm, PayInvoiceForm
from tollgate.web.context_processors import payment_overdue_of

# The checkout waiting for the customer to come back from the hosted card form: the price, the
# form token of the checkout (its idempotency key) and whether the plan's trial applies.
CHECKOUT_SESSION_KEY = "billing_checkout"
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


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # every view here requires a signed-in account  # noqa: S101
    return user


def _customer_or_404(request: HttpRequest) -> Customer:
    customer = selectors.customer_for(user=request.user)
    if customer is None:
        raise Http404("No billing account.")
    return customer


def _price_for_sale(public_id: str) -> Price:
    price = (
        Price.objects.select_related("plan")
        .filter(public_id=public_id, active=True, plan__active=True, plan__product__active=True)
        .first()
    )
    if price is None:
        raise Http404("No such price for sale.")
    return price


def _offers(customer: Customer) -> list[UpgradeOffer]:
    """Upgrade prompts: features the plan lacks, and limits the reported usage nearly uses up."""
    ref = customer_ref_of(customer)
    current = entitlements_for_customer(customer_pk=customer.pk, user_pk=ref.user_pk)
    totals = usage_current(customer=ref, entitlements=current).totals
    return upgrade_offers_for(current=current, usage=totals)


def _next_charge(subscription: Subscription | None) -> tuple[Any, Price] | None:
    """When the next renewal is charged and at which price; None when nothing more is charged."""
    if (
        subscription is None
        or subscription.cancel_at_period_end
        or subscription.status not in GRANTING
    ):
        return None
    return subscription.current_period_end, subscription.scheduled_price or subscription.price


# --- Dashboard ---------------------------------------------------------------------------------------
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


# --- Checkout ----------------------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
@login_required
def checkout(request: HttpRequest, price_id: str) -> HttpResponse:
    """A plan's checkout: start the trial, or save a card on the hosted form and come back."""
    user = _user(request)
    price = _price_for_sale(price_id)
    customer = selectors.customer_for(user=user)
    current = selectors.subscription_current(customer=customer) if customer else None
    if current is not None and current.status == SubscriptionStatus.INCOMPLETE:
        return redirect("billing:checkout_return")  # its first payment is still to be made
    if current is not None:
        messages.info(request, "You already have a subscription: change its plan here.")
        return redirect(f"{reverse('billing:change_plan')}?price={price.public_id}")
    card = selectors.payment_method_default(customer=customer) if customer else None
    actions = _checkout_actions(price, has_card=card is not None)
    form = CheckoutForm(request.POST or None, owner=user.public_id)
    if request.method == "POST" and form.is_valid():
        action = form.cleaned_data["action"]
        if action not in actions:
            form.add_error(None, "Choose one of the options below.")
        else:
            customer = services.customer_get_or_create(user=user)
            trial = bool(price.plan.trial_days) and action not in CheckoutForm.WITHOUT_TRIAL
            if action == CheckoutForm.CARD or (action == CheckoutForm.PAY_NOW and card is None):
                request.session[CHECKOUT_SESSION_KEY] = {
                    "price": price.public_id,
                    "token": form.cleaned_data["form_token"],
                    "trial": trial,
                }
                return _to_hosted_setup(request, customer, "billing:checkout_return")
            try:
                services.subscription_start(
                    customer=customer,
                    price=price,
                    trial=trial,
                    actor=user,
                    idempotency_key=form.cleaned_data["idempotency_key"],
                )
            except (SubscriptionExists, IdempotencyKeyInProgress):
                # A double submission: the result page shows the subscription the first one made.
                return redirect("billing:checkout_return")
            except TollgateError as exc:
                form.add_error(None, exc.message)
            else:
                return redirect("billing:checkout_return")
    return render(
        request,
        "billing/checkout.html",
        {"price": price, "plan": price.plan, "card": card, "actions": actions, "form": form},
        status=422 if form.errors else 200,
    )


def _checkout_actions(price: Price, *, has_card: bool) -> list[str]:
    """How a checkout of ``price`` may go, the recommended way first."""
    if price.amount == 0:
        return [CheckoutForm.FREE]
    actions = [CheckoutForm.SAVED] if has_card else []
    actions.append(CheckoutForm.CARD)
    if price.plan.trial_days and not has_card:
        actions.append(CheckoutForm.TRIAL)  # services start a trial without a card
    if price.plan.trial_days:
        actions.append(CheckoutForm.PAY_NOW)  # no trial: charged now, a receipt at once
    return actions


def _to_hosted_setup(
    request: HttpRequest, customer: Customer, return_view: str
) -> HttpResponseRedirect:
    session = services.payment_method_setup_start(
        customer=customer, return_url=request.build_absolute_uri(reverse(return_view))
    )
    return HttpResponseRedirect(session.url, status=303)


@require_safe
@login_required
def checkout_return(request: HttpRequest) -> HttpResponse:
    """Where the hosted card form sends the customer back (then the card is attached and the
    subscription started), and where a checkout's result is shown."""
    reference = gateway_get().setup_return_reference(query=request.GET)
    if reference:
        return _checkout_complete(request, reference)
    customer = selectors.customer_for(user=request.user)
    subscription = selectors.subscription_current(customer=customer) if customer else None
    if subscription is None:
        return redirect("web:pricing")
    payment = (
        selectors.payment_latest(subscription=subscription)
        if subscription.status in (SubscriptionStatus.INCOMPLETE, SubscriptionStatus.PAST_DUE)
        else None
    )
    return render(
        request,
        "billing/checkout_result.html",
        {
            "subscription": subscription,
            "outcome": _outcome(subscription, payment),
            "payment": payment,
            "decline": decline_message(payment.decline_code) if payment else "",
            "card": selectors.payment_method_default(customer=subscription.customer),
        },
    )


def _outcome(subscription: Subscription, payment: PaymentAttempt | None) -> str:
    if subscription.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING):
        return str(subscription.status)
    if payment is not None and payment.status == PaymentStatus.FAILED:
        return "declined"
    if payment is not None and payment.status == PaymentStatus.REQUIRES_ACTION:
        return "action_required"
    return "processing"


def _checkout_complete(request: HttpRequest, reference: str) -> HttpResponse:
    user = _user(request)
    pending = request.session.get(CHECKOUT_SESSION_KEY)
    if not isinstance(pending, dict):
        messages.error(request, "That checkout has expired. Choose your plan again.")
        return redirect("web:pricing")
    try:
        price = _price_for_sale(str(pending.get("price", "")))
    except Http404:
        messages.error(request, "That plan is no longer offered. Choose another one.")
        return redirect("web:pricing")
    customer = services.customer_get_or_create(user=user)
    try:
        services.payment_method_attach(customer=customer, setup_reference=reference, actor=user)
    except PaymentMethodNotFound:
        messages.error(request, "Your card was not saved. Try again, or use another card.")
        return redirect("billing:checkout", price_id=price.public_id)
    try:
        key = form_token_redeem(
            token=str(pending.get("token", "")), purpose=CheckoutForm.purpose, owner=user.public_id
        )
        services.subscription_start(
            customer=customer,
            price=price,
            trial=bool(pending.get("trial")),
            actor=user,
            idempotency_key=key,
        )
    except (SubscriptionExists, IdempotencyKeyInProgress):
        pass  # the same checkout again (a reload): its result stands
    except TollgateError as exc:
        messages.error(request, exc.message)
        return redirect("billing:checkout", price_id=price.public_id)
    return redirect("billing:checkout_return")


# --- Card --------------------------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
@login_required
def payment_method(request: HttpRequest) -> HttpResponse:
    """The saved card: replace it on the hosted form. A new card pays what is open at once."""
    user = _user(request)
    if request.method == "POST":
        return _to_hosted_setup(
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
    user = _user(request)
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


# --- Invoices ----------------------------------------------------------------------------------------
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
            "pay_form": PayInvoiceForm(owner=_user(request).public_id) if card else None,
        },
    )


@require_POST
@login_required
def invoice_pay(request: HttpRequest, invoice_id: str) -> HttpResponse:
    """Pay an invoice still owed now, with the saved card (on session: the customer is here). A
    second submission of the same form returns the first attempt's outcome."""
    user = _user(request)
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


# --- Plan changes, cancel, resume --------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
@login_required
def change_plan(request: HttpRequest) -> HttpResponse:
    """Choose another price, see what the change costs (prorated) or when it takes effect, confirm.
    A scheduled change can be dropped here too."""
    user = _user(request)
    customer = selectors.customer_for(user=user)
    subscription = selectors.subscription_current(customer=customer) if customer else None
    if subscription is None:
        messages.info(request, "Choose a plan to subscribe to first.")
        return redirect("web:pricing")
    if request.method == "POST" and request.POST.get("action") == "keep":
        try:
            services.subscription_scheduled_change_cancel(subscription=subscription, actor=user)
            messages.success(request, f"You'll stay on {subscription.price.plan.name}.")
        except TollgateError as exc:
            messages.error(request, exc.message)
        return redirect("billing:dashboard")
    form = ChangePlanForm(
        request.POST or None,
        owner=user.public_id,
        initial={"price": request.GET.get("price", "")},
    )
    chosen_id = request.POST.get("price") if request.method == "POST" else request.GET.get("price")
    options = [
        price
        for plan in plans_for_sale()
        for price in plan.prices.all()
        if price.currency == subscription.price.currency and price.pk != subscription.price_id
    ]
    chosen = next((price for price in options if price.public_id == chosen_id), None)
    if chosen_id and chosen is None:
        raise Http404("No such price to change to.")
    if request.method == "POST" and chosen is None:
        messages.error(request, "Choose the plan to change to, then confirm the change.")
        return redirect("billing:change_plan")
    if request.method == "POST" and chosen is not None and form.is_valid():
        try:
            changed = services.subscription_change_price(
                subscription=subscription,
                price=chosen,
                actor=user,
                idempotency_key=form.cleaned_data["idempotency_key"],
            )
        except TollgateError as exc:
            form.add_error(None, exc.message)
        else:
            _change_done_message(request, changed, chosen)
            return redirect("billing:dashboard")
    preview = (
        change_preview(subscription=subscription, price=chosen, at=clock.now()) if chosen else None
    )
    return render(
        request,
        "billing/change_plan.html",
        {
            "subscription": subscription,
            "options": options,
            "chosen": chosen,
            "preview": preview,
            "form": form,
        },
        status=422 if form.errors else 200,
    )


def _change_done_message(request: HttpRequest, subscription: Subscription, price: Price) -> None:
    if subscription.scheduled_price_id == price.pk:
        messages.success(
            request,
            f"Your plan changes to {price.plan.name} on "
            f"{subscription.current_period_end:%B %-d, %Y}.",
        )
        return
    messages.success(request, f"You're now on {price.plan.name}.")
    payment = selectors.payment_latest(subscription=subscription)
    if payment is not None and payment.status == PaymentStatus.FAILED:
        messages.error(
            request,
            f"The upgrade could not be charged: {decline_message(payment.decline_code)} "
            "Replace your card to pay it.",
        )
    elif payment is not None and payment.status == PaymentStatus.REQUIRES_ACTION:
        messages.warning(request, "Your bank needs you to confirm the upgrade's payment.")


@require_http_methods(["GET", "POST"])
@login_required
def cancel(request: HttpRequest) -> HttpResponse:
    """Cancel at the end of the period, with a short survey of why."""
    user = _user(request)
    customer = selectors.customer_for(user=user)
    subscription = selectors.subscription_current(customer=customer) if customer else None
    if (
        subscription is None
        or subscription.cancel_at_period_end
        or subscription.status not in GRANTING
    ):
        messages.info(request, "There is no subscription to cancel.")
        return redirect("billing:dashboard")
    form = CancelForm(request.POST or None, owner=user.public_id)
    if request.method == "POST" and form.is_valid():
        try:
            canceled = services.subscription_cancel(
                subscription=subscription,
                at_period_end=True,
                actor=user,
                idempotency_key=form.cleaned_data["idempotency_key"],
                reason=form.cleaned_data["reason"],
                comment=form.cleaned_data["comment"],
            )
        except TollgateError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request,
                f"Your subscription is canceled and ends on "
                f"{canceled.current_period_end:%B %-d, %Y}. You can resume it until then.",
            )
            return redirect("billing:dashboard")
    return render(
        request,
        "billing/cancel.html",
        {"subscription": subscription, "form": form},
        status=422 if form.errors else 200,
    )


@require_POST
@login_required
def resume(request: HttpRequest) -> HttpResponse:
    customer = selectors.customer_for(user=request.user)
    subscription = selectors.subscription_current(customer=customer) if customer else None
    if subscription is None:
        messages.info(request, "There is no subscription to resume.")
        return redirect("billing:dashboard")
    try:
        services.subscription_resume(subscription=subscription, actor=_user(request))
    except TollgateError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Your subscription will continue. Welcome back!")
    return redirect("billing:dashboard")
