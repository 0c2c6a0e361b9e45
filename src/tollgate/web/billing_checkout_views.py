"""Subscribing: a plan's checkout, the trip to the hosted card form and back, and the result page."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_safe

from tollgate.billing import discounts, selectors, services
from tollgate.billing.errors import (
    PaymentMethodNotFound,
    PromotionCodeRefused,
    SeatsBelowMembers,
    SubscriptionExists,
)
from tollgate.billing.gateways.registry import gateway_get
from tollgate.billing.models import Customer, PaymentAttempt, PromotionCode, Subscription
from tollgate.billing.seats import members_count
from tollgate.billing.states import PaymentStatus, SubscriptionStatus
from tollgate.catalog.models import Price
from tollgate.core import clock
from tollgate.core.errors import IdempotencyKeyInProgress, TollgateError
from tollgate.core.idempotency import form_token_redeem
from tollgate.web.billing_card_views import hosted_setup_redirect
from tollgate.web.billing_forms import CheckoutForm
from tollgate.web.billing_views import decline_message, signed_in_user

# The checkout waiting for the customer to come back from the hosted card form: the price, the
# form token of the checkout (its idempotency key) and whether the plan's trial applies.
CHECKOUT_SESSION_KEY = "billing_checkout"
# A promotion code to fill in on the checkout (``?promotion_code=SPRING``; checkout links use it).
PROMOTION_CODE_PARAMETER = "promotion_code"
PROMOTION_CODE_MAX_LENGTH = 40  # as CheckoutForm.promotion_code


def _price_for_sale(public_id: str) -> Price:
    price = (
        Price.objects.select_related("plan")
        .filter(public_id=public_id, active=True, plan__active=True, plan__product__active=True)
        .first()
    )
    if price is None:
        raise Http404("No such price for sale.")
    return price


@require_http_methods(["GET", "POST"])
@login_required
def checkout(request: HttpRequest, price_id: str) -> HttpResponse:
    """A plan's checkout: start the trial, or save a card on the hosted form and come back."""
    user = signed_in_user(request)
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
    prefilled = _promotion_code_prefilled(request)
    form = CheckoutForm(
        request.POST or None, owner=user.public_id, initial={"promotion_code": prefilled}
    )
    promotion = None
    promotion_refused = ""
    # A new customer gets an organisation of its own: one member.
    members = max(1, members_count(customer)) if customer else 1
    seats = members if price.per_seat else 1
    if request.method == "GET" and prefilled and price.amount:
        promotion, promotion_refused = _promotion_usable(prefilled, customer, price)
    if request.method == "POST" and form.is_valid():
        action = form.cleaned_data["action"]
        if price.per_seat:
            seats = _seats_checked(form, members)
        promotion = _promotion_checked(form, customer, price)
        if action in CheckoutForm.PREVIEWS or form.errors:
            pass  # shown again with the total and the code's discount, or why it cannot be
        elif action not in actions:
            form.add_error(None, "Choose one of the options below.")
        else:
            customer = services.customer_get_or_create(user=user)
            trial = bool(price.plan.trial_days) and action not in CheckoutForm.WITHOUT_TRIAL
            if action == CheckoutForm.CARD or (action == CheckoutForm.PAY_NOW and card is None):
                request.session[CHECKOUT_SESSION_KEY] = {
                    "price": price.public_id,
                    "token": form.cleaned_data["form_token"],
                    "trial": trial,
                    "code": form.cleaned_data["promotion_code"],
                    "seats": seats,
                }
                return hosted_setup_redirect(request, customer, "billing:checkout_return")
            try:
                services.subscription_start(
                    customer=customer,
                    price=price,
                    trial=trial,
                    actor=user,
                    idempotency_key=form.cleaned_data["idempotency_key"],
                    promotion_code=form.cleaned_data["promotion_code"],
                    seats=seats if price.per_seat else None,
                )
            except (SubscriptionExists, IdempotencyKeyInProgress):
                # A double submission: the result page shows the subscription the first one made.
                return redirect("billing:checkout_return")
            except PromotionCodeRefused as exc:
                form.add_error("promotion_code", exc.message)
                form.token_renew()  # the refused request keeps its key
            except SeatsBelowMembers as exc:
                form.add_error("seats", exc.message)
                form.token_renew()
            except TollgateError as exc:
                form.add_error(None, exc.message)
            else:
                return redirect("billing:checkout_return")
    return render(
        request,
        "billing/checkout.html",
        {
            "price": price,
            "plan": price.plan,
            "card": card,
            "actions": actions,
            "form": form,
            "promotion": promotion,
            "promotion_refused": promotion_refused,
            "discount": _discount_preview(promotion, price, seats) if promotion else None,
            "seats": seats,
            "members": members,
            "total": price.amount_for(seats),
        },
        status=422 if form.errors else 200,
    )


def _seats_checked(form: CheckoutForm, members: int) -> int:
    """The seats the form asks for (by default one per member), with an error on the form when
    they are fewer than the members."""
    seats: int = form.cleaned_data.get("seats") or members
    if seats < members:
        form.add_error(
            "seats",
            f"Your organisation has {members} members: choose at least {members} seats.",
        )
        return members
    return seats


def _promotion_checked(
    form: CheckoutForm, customer: Customer | None, price: Price
) -> PromotionCode | None:
    """The promotion code the form names, if the customer may use it on ``price``; otherwise
    None, with the reason on the form (a code to check and none given, too)."""
    code = form.cleaned_data["promotion_code"]
    if not code.strip():
        if form.cleaned_data["action"] == CheckoutForm.APPLY:
            form.add_error("promotion_code", "Enter a promotion code.")
        return None
    promotion, refused = _promotion_usable(code, customer, price)
    if refused:
        form.add_error("promotion_code", refused)
    return promotion


def _promotion_code_prefilled(request: HttpRequest) -> str:
    """The promotion code the address asks to fill in, if any (as typed; checked on its own)."""
    value = request.GET.get(PROMOTION_CODE_PARAMETER, "")
    return value.strip()[:PROMOTION_CODE_MAX_LENGTH]


def _promotion_usable(
    code: str, customer: Customer | None, price: Price
) -> tuple[PromotionCode | None, str]:
    """The promotion code ``code`` if the customer may use it on ``price`` (its discount is
    shown), or why not; subscribing checks it again."""
    try:
        promotion = discounts.promotion_code_check(
            code=code, customer=customer, price=price, now=clock.now()
        )
    except PromotionCodeRefused as exc:
        return None, exc.message
    return promotion, ""


def _discount_preview(promotion: PromotionCode, price: Price, seats: int) -> dict[str, Any]:
    total = price.amount_for(seats)
    off = discounts.amount_off(coupon=promotion.coupon, amount=total, currency=price.currency)
    return {
        "off": off,
        "net": total - off,
        "terms": discounts.coupon_terms(promotion.coupon),
    }


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
    user = signed_in_user(request)
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
            promotion_code=str(pending.get("code", "")),
            seats=_pending_seats(pending, price),
        )
    except (SubscriptionExists, IdempotencyKeyInProgress):
        pass  # the same checkout again (a reload): its result stands
    except TollgateError as exc:
        messages.error(request, exc.message)
        return redirect("billing:checkout", price_id=price.public_id)
    return redirect("billing:checkout_return")


def _pending_seats(pending: dict[str, Any], price: Price) -> int | None:
    seats = pending.get("seats")
    return seats if price.per_seat and isinstance(seats, int) else None
