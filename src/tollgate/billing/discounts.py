"""Discounts: what a coupon takes off an amount, which codes may be used where, and which
invoices a discount applies to. Reads and arithmetic only; the writes are in ``steps.discounts``
and ``services.discounts``.

**The rounding rule of a percentage.** A coupon of ``p`` percent (up to two decimals) takes
``min(A, ceil(A * p / (100 * s)) * s)`` minor units off an amount ``A``: rounded up, in the
customer's favour, to a whole number of the gateway's charge steps ``s`` (``proration.py``: 1
almost everywhere, at Stripe 10 for the three-decimal currencies and 100 for MGA), so what is left
to pay is still an amount the gateway charges exactly. Minor units are whole whatever the
currency's exponent, so the rule is the same for JPY (no decimals), USD (two) and KWD (three):
33.33% of JPY 1000 is 334 yen off, 15% of KWD 1.990 (1990 fils, step 10) is 300 fils off. A fixed
amount (itself a whole number of steps: ``coupon_create`` checks) takes ``min(amount_off, A)`` off
an amount in its currency, or in one of its further currencies with that currency's amount
(``amounts_off``), and nothing off any other currency. A discount never takes an amount below
zero.

**Which invoices.** A discount applies to the invoice of every billing period that starts in
``[starts_at, ends_at)`` while the coupon fits the subscription's price (one of its plans, if it
names any; one of its currencies, for a fixed amount). ``ends_at`` is fixed when the discount is applied,
on the subscription's schedule then: the end of the first discounted period (``once``), of the
``n``-th (``repeating``), or never (``forever``). A plan change prorates what was paid after the
discount and applies the discount to the new price's remaining time while it lasts
(``steps.invoices.upgrade_invoice_locked``).

**When a code may be used** (``promotion_code_check``): it exists (any case), neither it nor its
coupon is archived or past its expiry, neither has reached its redemption limit, the coupon fits
the price, and a first-time-only code or coupon is used by a customer who has never had a
subscription. The redemption counters are taken race-free when the code is redeemed
(``steps.discounts.promotion_code_redeem_locked``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from tollgate.billing import periods
from tollgate.billing.errors import PromotionCodeRefused
from tollgate.billing.models import Coupon, Customer, Discount, PromotionCode, Subscription
from tollgate.billing.states import SubscriptionStatus
from tollgate.catalog.models import Price
from tollgate.core.errors import ValidationFailed
from tollgate.core.money import Money, chargeable_exactly, validate_currency

CODE_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9_-]{2,39}$")

REFUSALS = {
    "unknown": "That code isn't valid; check it and try again.",
    "expired": "That code has expired.",
    "exhausted": "That code has been used as many times as it can be.",
    "not_applicable": "That code doesn't apply to this plan.",
    "first_time_only": "That code is for new customers only.",
}


def refused(reason: str) -> PromotionCodeRefused:
    return PromotionCodeRefused(REFUSALS[reason], details={"reason": reason, "field": "code"})


def code_normalize(code: str) -> str:
    """A code as stored: trimmed and upper-case (codes match without regard to case)."""
    return code.strip().upper()


def amount_off(*, coupon: Coupon, amount: int, currency: str, step: int = 1) -> int:
    """What ``coupon`` takes off ``amount`` minor units of ``currency``, in charge steps of
    ``step`` (the rule above)."""
    if amount <= 0:
        return 0
    if coupon.percent_off is not None:
        hundredths = int(coupon.percent_off * 100)  # two decimals: exact
        return min(amount, -(-amount * hundredths // (10_000 * step)) * step)
    fixed = fixed_amount_in(coupon, currency)
    return min(fixed, amount) if fixed else 0


def fixed_amount_in(coupon: Coupon, currency: str) -> int | None:
    """The fixed amount ``coupon`` takes off in ``currency`` (its own or one of its further
    currencies); None for a percentage or a currency it has no amount in."""
    if coupon.amount_off is None:
        return None
    if coupon.currency == currency:
        return coupon.amount_off
    further = (coupon.amounts_off or {}).get(currency)
    return further if isinstance(further, int) and not isinstance(further, bool) else None


def further_amounts_checked(amounts: Mapping[str, Any], currency: str) -> dict[str, int]:
    """A fixed-amount coupon's further currencies (``Coupon.amounts_off``) checked: each a
    currency (ISO 4217) other than its own ``currency``, with an amount above zero that the
    gateway charges exactly (ValidationFailed, field ``amounts_off``, otherwise)."""
    checked: dict[str, int] = {}

    def invalid(message: str) -> ValidationFailed:
        return ValidationFailed(message, details={"field": "amounts_off"})

    for code, amount in amounts.items():
        try:
            other = validate_currency(str(code))
        except ValueError as exc:
            raise invalid(f"{str(code)[:8]} is not a currency (ISO 4217).") from exc
        if other == currency or other in checked:
            raise invalid(f"{other} is given twice.")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise invalid(f"The amount off in {other} is more than zero.")
        if not chargeable_exactly(Money(amount, other)):
            raise invalid(f"The payment gateway cannot charge {other} in this precision; round it.")
        checked[other] = amount
    return dict(sorted(checked.items()))


def coupon_fits(*, coupon: Coupon, price: Price, plan_ids: Iterable[int] | None = None) -> bool:
    """Whether ``coupon`` can discount ``price``: one of its plans (when it names some) and, for a
    fixed amount, a currency it has an amount in. ``plan_ids``: the coupon's plans, when already
    read."""
    if coupon.amount_off is not None and fixed_amount_in(coupon, price.currency) is None:
        return False
    allowed = set(plan_ids if plan_ids is not None else coupon.plans.values_list("pk", flat=True))
    return not allowed or price.plan_id in allowed


def discount_covers(*, discount: Discount, period_start: dt.datetime) -> bool:
    """Whether the invoice of a period starting at ``period_start`` falls in ``discount``."""
    if discount.ended_at is not None and discount.ended_at <= period_start:
        return False
    return discount.starts_at <= period_start and (
        discount.ends_at is None or period_start < discount.ends_at
    )


def discount_end(
    *, coupon: Coupon, anchor: dt.datetime, months: int, first: periods.Period
) -> dt.datetime | None:
    """When a discount of ``coupon`` whose first discounted period is ``first`` (on the schedule
    of ``anchor`` and ``months``) stops applying; None for ``forever``."""
    if coupon.duration == Coupon.Duration.FOREVER:
        return None
    count = coupon.duration_periods if coupon.duration == Coupon.Duration.REPEATING else 1
    last = first
    for _ in range(max(count or 1, 1) - 1):
        last = periods.period_after(anchor=anchor, months=months, period=last)
    return last.end


def first_time(*, customer: Customer | None, subscription: Subscription | None = None) -> bool:
    """Whether ``customer`` never had a subscription (other than ``subscription``), not counting
    one that expired before its first payment (a checkout that never went through)."""
    if customer is None:
        return True
    others = Subscription.objects.filter(customer=customer).exclude(
        status=SubscriptionStatus.INCOMPLETE_EXPIRED
    )
    if subscription is not None:
        others = others.exclude(pk=subscription.pk)
    return not others.exists()


def coupon_check(
    *,
    coupon: Coupon,
    customer: Customer | None,
    price: Price,
    now: dt.datetime,
    subscription: Subscription | None = None,
) -> None:
    """Refuse (``PromotionCodeRefused``) a coupon that cannot discount ``price`` for
    ``customer`` now."""
    if coupon.archived_at is not None or (coupon.redeem_by and coupon.redeem_by <= now):
        raise refused("expired")
    if coupon.max_redemptions is not None and coupon.times_redeemed >= coupon.max_redemptions:
        raise refused("exhausted")
    if not coupon_fits(coupon=coupon, price=price):
        raise refused("not_applicable")
    if coupon.first_time_only and not first_time(customer=customer, subscription=subscription):
        raise refused("first_time_only")


def promotion_code_check(
    *,
    code: str,
    customer: Customer | None,
    price: Price,
    now: dt.datetime,
    subscription: Subscription | None = None,
) -> PromotionCode:
    """The promotion code ``code`` (any case) if ``customer`` may use it on ``price`` now;
    otherwise ``PromotionCodeRefused`` saying why (see the module docstring)."""
    normalized = code_normalize(code)
    promotion = None
    if CODE_PATTERN.match(normalized):
        promotion = PromotionCode.objects.select_related("coupon").filter(code=normalized).first()
    if promotion is None:
        raise refused("unknown")
    if promotion.archived_at is not None or (promotion.expires_at and promotion.expires_at <= now):
        raise refused("expired")
    if (
        promotion.max_redemptions is not None
        and promotion.times_redeemed >= promotion.max_redemptions
    ):
        raise refused("exhausted")
    coupon_check(
        coupon=promotion.coupon, customer=customer, price=price, now=now, subscription=subscription
    )
    if promotion.first_time_only and not first_time(customer=customer, subscription=subscription):
        raise refused("first_time_only")
    return promotion


def discounts_live(subscription_ids: Iterable[int]) -> dict[int, Discount]:
    """The live discount of each of these subscriptions that has one, with its coupon and the
    coupon's plans (two queries at most, whatever their number)."""
    rows = (
        Discount.objects.filter(subscription__in=list(subscription_ids), ended_at__isnull=True)
        .select_related("coupon")
        .prefetch_related("coupon__plans")
    )
    return {discount.subscription_id: discount for discount in rows}


def discount_amount_for(
    *,
    discount: Discount | None,
    price: Price,
    amount: int,
    period_start: dt.datetime,
    step: int = 1,
) -> int:
    """What ``discount`` (read by ``discounts_live``) takes off ``amount`` of ``price`` for the
    period starting at ``period_start``, in charge steps of ``step``: 0 when it does not cover
    that period or fit the price."""
    if discount is None or not discount_covers(discount=discount, period_start=period_start):
        return 0
    coupon = discount.coupon
    plan_ids = [plan.pk for plan in coupon.plans.all()]
    if not coupon_fits(coupon=coupon, price=price, plan_ids=plan_ids):
        return 0
    return amount_off(coupon=coupon, amount=amount, currency=price.currency, step=step)


def coupon_terms(coupon: Coupon) -> str:
    """What ``coupon`` gives, in words: ``20% off for 3 billing periods``."""
    if coupon.percent_off is not None:
        off = f"{coupon.percent_off.normalize():f}% off"
    else:
        amounts = [Money(coupon.amount_off or 0, coupon.currency)] + [
            Money(amount, currency)
            for currency, amount in sorted((coupon.amounts_off or {}).items())
        ]
        off = f"{' or '.join(money.format() for money in amounts)} off"
    if coupon.duration == Coupon.Duration.ONCE:
        return f"{off} the first invoice"
    if coupon.duration == Coupon.Duration.REPEATING:
        count = coupon.duration_periods or 1
        return f"{off} for {count} billing period{'s' if count > 1 else ''}"
    return f"{off} every invoice"
