"""The subscription's course: change plan (with a proration preview), seats of a per-seat plan,
cancel at the period end, resume."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from tollgate.billing import selectors, services
from tollgate.billing.entitlements import GRANTING
from tollgate.billing.models import Subscription
from tollgate.billing.previews import change_preview, seats_preview
from tollgate.billing.seats import SEATS_MAX, members_count, seats_for_price
from tollgate.billing.states import PaymentStatus
from tollgate.catalog.models import Price
from tollgate.catalog.selectors import plans_for_sale
from tollgate.core import clock
from tollgate.core.errors import TollgateError
from tollgate.web.billing_forms import CancelForm, ChangePlanForm, SeatsForm
from tollgate.web.billing_views import decline_message, signed_in_user


@require_http_methods(["GET", "POST"])
@login_required
def change_plan(request: HttpRequest) -> HttpResponse:
    """Choose another price, see what the change costs (prorated) or when it takes effect, confirm.
    A scheduled change can be dropped here too."""
    user = signed_in_user(request)
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
    seats = (
        seats_for_price(
            subscription=subscription, members=members_count(subscription.customer), price=chosen
        )
        if chosen
        else subscription.seats
    )
    preview = (
        change_preview(subscription=subscription, price=chosen, at=clock.now(), seats=seats)
        if chosen
        else None
    )
    return render(
        request,
        "billing/change_plan.html",
        {
            "subscription": subscription,
            "options": options,
            "chosen": chosen,
            "chosen_amount": chosen.amount_for(seats) if chosen else 0,
            "seats": seats,
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
    _charge_outcome_message(request, subscription, "the upgrade")


def _charge_outcome_message(request: HttpRequest, subscription: Subscription, what: str) -> None:
    """Say so when the charge of a change made now (``what``) failed or waits for the bank."""
    payment = selectors.payment_latest(subscription=subscription)
    if payment is not None and payment.status == PaymentStatus.FAILED:
        messages.error(
            request,
            f"{what[0].upper()}{what[1:]} could not be charged: "
            f"{decline_message(payment.decline_code)} Replace your card to pay for it.",
        )
    elif payment is not None and payment.status == PaymentStatus.REQUIRES_ACTION:
        messages.warning(request, f"Your bank needs you to confirm the payment for {what}.")


@require_http_methods(["GET", "POST"])
@login_required
def seats(request: HttpRequest) -> HttpResponse:
    """Choose how many seats a per-seat plan pays for, see what that costs now (more seats,
    prorated) or when it takes effect (fewer), confirm."""
    user = signed_in_user(request)
    customer = selectors.customer_for(user=user)
    subscription = selectors.subscription_current(customer=customer) if customer else None
    if subscription is None or not subscription.price.per_seat:
        messages.info(request, "Your plan is not priced per seat.")
        return redirect("billing:dashboard")
    members = members_count(subscription.customer)
    form = SeatsForm(request.POST or None, owner=user.public_id)
    wanted = _seats_asked(request.POST if request.method == "POST" else request.GET)
    if request.method == "POST" and form.is_valid():
        try:
            changed = services.subscription_seats_change(
                subscription=subscription,
                seats=form.cleaned_data["seats"],
                actor=user,
                idempotency_key=form.cleaned_data["idempotency_key"],
            )
        except TollgateError as exc:
            form.add_error(None, exc.message)
        else:
            _seats_done_message(request, changed, form.cleaned_data["seats"])
            return redirect("billing:dashboard")
    error = ""
    if wanted is not None and wanted < members:
        error = f"Your organisation has {members} members: keep at least {members} seats."
    elif "seats" in request.GET and wanted is None:
        error = f"Choose a whole number of seats from 1 to {SEATS_MAX:,}."
    preview = (
        seats_preview(subscription=subscription, seats=wanted, at=clock.now())
        if wanted is not None and not error and wanted != subscription.seats
        else None
    )
    return render(
        request,
        "billing/seats.html",
        {
            "subscription": subscription,
            "members": members,
            "wanted": wanted,
            "preview": preview,
            "error": error,
            "form": form,
            "seats_max": SEATS_MAX,
        },
        status=422 if form.errors or error else 200,
    )


def _seats_asked(data: Any) -> int | None:
    raw = str(data.get("seats", "")).strip()
    if not raw.isdigit() or len(raw) > 6:
        return None
    seats = int(raw)
    return seats if 1 <= seats <= SEATS_MAX else None


def _seats_done_message(request: HttpRequest, subscription: Subscription, seats: int) -> None:
    if subscription.scheduled_seats == seats:
        messages.success(
            request,
            f"Your subscription has {seats} seat{'s' if seats != 1 else ''} from "
            f"{subscription.current_period_end:%B %-d, %Y}.",
        )
        return
    messages.success(request, f"Your subscription has {seats} seat{'s' if seats != 1 else ''} now.")
    _charge_outcome_message(request, subscription, "the added seats")


@require_http_methods(["GET", "POST"])
@login_required
def cancel(request: HttpRequest) -> HttpResponse:
    """Cancel at the end of the period, with a short survey of why."""
    user = signed_in_user(request)
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
        services.subscription_resume(subscription=subscription, actor=signed_in_user(request))
    except TollgateError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Your subscription will continue. Welcome back!")
    return redirect("billing:dashboard")
