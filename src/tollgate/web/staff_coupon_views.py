"""Staff pages for coupons and promotion codes: the coupons and their redemptions, creating a
coupon, its codes, archiving either, and applying a coupon to a customer's subscription. The
services in ``billing.services.discounts`` check the rules and audit every change."""

from __future__ import annotations

from typing import cast

from django.contrib import messages
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from tollgate.accounts.models import User
from tollgate.billing import discounts, services
from tollgate.billing.models import Coupon, PromotionCode
from tollgate.core.errors import TollgateError
from tollgate.web import errors
from tollgate.web.staff_coupon_forms import ApplyCouponForm, CouponForm, PromotionCodeForm
from tollgate.web.staff_views import _action, _customer_url, _subscription, _Token, staff_required

COUPONS_SHOWN = 200


def _staff(request: HttpRequest) -> User:
    return cast(User, request.user)


def _coupon(coupon_id: str) -> Coupon | None:
    codes = Prefetch("promotion_codes", queryset=PromotionCode.objects.order_by("code"))
    return Coupon.objects.prefetch_related("plans", codes).filter(public_id=coupon_id).first()


@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def coupons(request: HttpRequest) -> HttpResponse:
    """The coupons, newest first, with their terms and redemptions; and the form creating one."""
    form = CouponForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            coupon = services.coupon_create(**form.service_arguments(), actor=_staff(request))
        except TollgateError as exc:
            form.refusal(exc)
        else:
            messages.success(request, f"Coupon {coupon.name} created: now give it a code.")
            return redirect("staff:coupon", coupon_id=coupon.public_id)
    rows = Coupon.objects.prefetch_related("promotion_codes")[:COUPONS_SHOWN]
    return render(
        request,
        "staff/coupons.html",
        {
            "form": form,
            "rows": [(coupon, discounts.coupon_terms(coupon)) for coupon in rows],
        },
        status=422 if form.is_bound else 200,
    )


@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def coupon(request: HttpRequest, coupon_id: str) -> HttpResponse:
    """One coupon: its terms, its codes, and the form adding a code."""
    found = _coupon(coupon_id)
    if found is None:
        return errors.error_response(request, 404)
    form = PromotionCodeForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            promotion = services.promotion_code_create(
                coupon=found, **form.service_arguments(), actor=_staff(request)
            )
        except TollgateError as exc:
            form.refusal(exc)
        else:
            messages.success(request, f"Code {promotion.code} created.")
            return redirect("staff:coupon", coupon_id=found.public_id)
    return render(
        request,
        "staff/coupon.html",
        {"coupon": found, "terms": discounts.coupon_terms(found), "form": form},
        status=422 if form.is_bound else 200,
    )


@require_POST
@staff_required
def coupon_archive(request: HttpRequest, coupon_id: str) -> HttpResponse:
    found = _coupon(coupon_id)
    if found is None:
        return errors.error_response(request, 404)
    services.coupon_archive(coupon=found, actor=_staff(request))
    messages.success(request, f"Coupon {found.name} archived: it and its codes redeem no more.")
    return redirect("staff:coupon", coupon_id=found.public_id)


@require_POST
@staff_required
def promotion_code_archive(request: HttpRequest, code_id: str) -> HttpResponse:
    promotion = PromotionCode.objects.select_related("coupon").filter(public_id=code_id).first()
    if promotion is None:
        return errors.error_response(request, 404)
    services.promotion_code_archive(promotion=promotion, actor=_staff(request))
    messages.success(request, f"Code {promotion.code} archived.")
    return redirect("staff:coupon", coupon_id=promotion.coupon.public_id)


@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def subscription_discount(request: HttpRequest, subscription_id: str) -> HttpResponse:
    """Apply a coupon to a subscription, from its next invoice (a form with a single-use token)."""
    subscription = _subscription(subscription_id)
    if subscription is None:
        return errors.error_response(request, 404)
    staff = _staff(request)

    def act(form: ApplyCouponForm, key: str) -> str:
        discount = services.subscription_discount_apply(
            subscription=subscription,
            coupon=form.cleaned_data["coupon"],
            actor=staff,
            idempotency_key=key,
        )
        until = f" until {discount.ends_at:%-d %B %Y}" if discount.ends_at else ""
        return (
            f"{form.cleaned_data['coupon'].name} applies to {subscription.public_id} from "
            f"{discount.starts_at:%-d %B %Y}{until}."
        )

    return _action(
        request,
        make_form=ApplyCouponForm,
        token=_Token(purpose=f"staff_discount:{subscription.public_id}", owner=staff.public_id),
        act=act,
        template="staff/subscription_discount.html",
        context={
            "subscription": subscription,
            "discount": subscription.discounts.filter(ended_at__isnull=True)
            .select_related("coupon")
            .first(),
            "coupons_url": reverse("staff:coupons"),
        },
        done_url=_customer_url(subscription.customer.public_id),
    )
