"""Discount steps: redeeming a promotion code (or a coupon, by staff) for a subscription, in the
caller's transaction after its customer and subscription locks.

Redemptions are counted race-free: each counter moves by one conditional UPDATE (``times_redeemed
+ 1`` only while below ``max_redemptions``), which on PostgreSQL waits for a concurrent redemption
of the same row and checks the limit again on its result; a counter that did not move refuses the
redemption and the caller's transaction rolls back whatever it counted already. A check
constraint on each counter is the last line of defence. The promotion code's counter is taken
before its coupon's, always in that order.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import F, Q

from tollgate.audit.services import audit_record
from tollgate.billing import discounts, periods
from tollgate.billing.models import Coupon, Customer, Discount, PromotionCode, Subscription
from tollgate.billing.periods import price_months


def _count_redemption(model: type[Coupon] | type[PromotionCode], pk: int) -> bool:
    below_limit = Q(max_redemptions__isnull=True) | Q(times_redeemed__lt=F("max_redemptions"))
    return bool(
        model.objects.filter(below_limit, pk=pk).update(times_redeemed=F("times_redeemed") + 1)
    )


def redemption_count_locked(*, coupon: Coupon, promotion: PromotionCode | None) -> None:
    """Count one redemption of ``promotion`` (if any) and of ``coupon``, or refuse it
    (``exhausted``) when either has reached its limit."""
    if promotion is not None and not _count_redemption(PromotionCode, promotion.pk):
        raise discounts.refused("exhausted")
    if not _count_redemption(Coupon, coupon.pk):
        raise discounts.refused("exhausted")


def redemptions_release_locked(*, subscription: Subscription, now: dt.datetime) -> None:
    """The locked ``subscription`` ended without ever being paid for (its first invoice expired
    unpaid): its discounts end now and give their redemptions back, so a limited code is not used
    up by a checkout that never went through. Audited per discount."""
    for discount in Discount.objects.filter(subscription=subscription, ended_at__isnull=True):
        for model, pk in (
            (PromotionCode, discount.promotion_code_id),
            (Coupon, discount.coupon_id),
        ):
            if pk is not None:
                model.objects.filter(pk=pk, times_redeemed__gt=0).update(
                    times_redeemed=F("times_redeemed") - 1
                )
        discount.ended_at = now
        discount.save(update_fields=["ended_at"])
        audit_record(
            action="billing.discount_redemption_released",
            target=subscription,
            details={"discount": discount.public_id},
        )


def first_discounted_period(*, subscription: Subscription) -> periods.Period:
    """The first period a discount applied now covers: the current one if its invoice is still to
    be made (a new subscription, a trial), else the next one."""
    months = price_months(subscription.price)
    anchor = subscription.billing_anchor
    invoiced = subscription.invoices.exists()
    start = max(anchor, subscription.current_period_end) if invoiced else anchor
    return periods.period_at(anchor=anchor, months=months, at=start)


def discount_apply_locked(
    *,
    customer: Customer,
    subscription: Subscription,
    coupon: Coupon,
    promotion: PromotionCode | None,
    now: dt.datetime,
) -> Discount:
    """Apply ``coupon`` (redeemed through ``promotion``, if any) to the locked ``subscription``,
    counting the redemption; a discount it had ends now. The caller has checked the coupon
    (``discounts.coupon_check``)."""
    redemption_count_locked(coupon=coupon, promotion=promotion)
    first = first_discounted_period(subscription=subscription)
    Discount.objects.filter(subscription=subscription, ended_at__isnull=True).update(ended_at=now)
    return Discount.objects.create(
        customer=customer,
        subscription=subscription,
        coupon=coupon,
        promotion_code=promotion,
        starts_at=first.start,
        ends_at=discounts.discount_end(
            coupon=coupon,
            anchor=subscription.billing_anchor,
            months=price_months(subscription.price),
            first=first,
        ),
    )


def promotion_code_redeem_locked(
    *, code: str, customer: Customer, subscription: Subscription, now: dt.datetime
) -> Discount:
    """Redeem the promotion code ``code`` (any case) for the locked, just started
    ``subscription``: checked (``discounts.promotion_code_check``), counted and applied, audited;
    ``PromotionCodeRefused`` says why it cannot be."""
    promotion = discounts.promotion_code_check(
        code=code, customer=customer, price=subscription.price, now=now, subscription=subscription
    )
    discount = discount_apply_locked(
        customer=customer,
        subscription=subscription,
        coupon=promotion.coupon,
        promotion=promotion,
        now=now,
    )
    audit_record(
        action="billing.discount_applied",
        target=subscription,
        details={
            "discount": discount.public_id,
            "coupon": promotion.coupon.public_id,
            "promotion_code": promotion.public_id,
        },
    )
    return discount
