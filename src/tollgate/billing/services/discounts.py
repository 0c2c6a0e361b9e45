"""Coupon and promotion code writes (staff): create and archive them, and apply a coupon to an
existing subscription. Each is one durable transaction, audited; what the rules are is in
``billing.discounts``, redemption counting in ``steps.discounts``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TypeVar

from django.db import IntegrityError, transaction

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing import discounts
from tollgate.billing.locks import lock_subscription
from tollgate.billing.models import Coupon, Discount, PromotionCode, Subscription
from tollgate.billing.states import SUBSCRIPTION_ENDED
from tollgate.billing.steps.discounts import discount_apply_locked
from tollgate.billing.steps.subscriptions import subscription_event_publish
from tollgate.catalog.models import Plan
from tollgate.core import clock
from tollgate.core.errors import Conflict, PermissionDenied, ValidationFailed
from tollgate.core.idempotency import IdempotencyClaim, PublicIdResult, idempotent
from tollgate.core.money import Money, chargeable_exactly, validate_currency


def _staff(actor: User) -> None:
    if not actor.is_staff:
        raise PermissionDenied("Only staff can manage coupons.")


def _invalid(message: str, field: str) -> ValidationFailed:
    return ValidationFailed(message, details={"field": field})


def coupon_create(
    *,
    name: str,
    percent_off: Decimal | None = None,
    amount_off: int | None = None,
    currency: str = "",
    amounts_off: Mapping[str, int] | None = None,
    duration: str,
    duration_periods: int | None = None,
    plans: Sequence[Plan] = (),
    max_redemptions: int | None = None,
    redeem_by: dt.datetime | None = None,
    first_time_only: bool = False,
    actor: User,
) -> Coupon:
    """Create a coupon: a percentage (more than 0, at most 100, two decimals) or a fixed amount
    in minor units of ``currency`` (and of the further currencies of ``amounts_off``: code ->
    minor units, for prices in those currencies); once, ``duration_periods`` periods (``repeating``) or
    forever; optionally for some plans only, with a redemption limit, an expiry and for
    first-time customers only. Audited."""
    _staff(actor)
    if not name.strip():
        raise _invalid("Give the coupon a name.", "name")
    if (percent_off is None) == (amount_off is None):
        raise _invalid("Give either a percentage or a fixed amount off.", "percent_off")
    if percent_off is not None and not (
        0 < percent_off <= 100 and percent_off == round(percent_off, 2)
    ):
        raise _invalid(
            "A percentage is more than 0 and at most 100, with two decimals.", "percent_off"
        )
    if amount_off is not None:
        if amount_off <= 0:
            raise _invalid("A fixed amount off is more than zero.", "amount_off")
        try:
            currency = validate_currency(currency)
        except ValueError as exc:
            raise _invalid("A fixed amount needs its currency (ISO 4217).", "currency") from exc
        if not chargeable_exactly(Money(amount_off, currency)):
            raise _invalid(
                f"The payment gateway cannot charge {currency} in this precision; round it.",
                "amount_off",
            )
        further = discounts.further_amounts_checked(amounts_off or {}, currency)
    else:
        if amounts_off:
            raise _invalid("Amounts in further currencies go with a fixed amount.", "amounts_off")
        currency, further = "", {}
    if duration not in Coupon.Duration.values:
        raise _invalid("Choose how long the discount lasts.", "duration")
    if duration == Coupon.Duration.REPEATING and not (duration_periods or 0) >= 1:
        raise _invalid("Say for how many billing periods.", "duration_periods")
    if max_redemptions is not None and max_redemptions < 1:
        raise _invalid("A redemption limit is at least 1.", "max_redemptions")
    with transaction.atomic(durable=True):
        coupon = Coupon.objects.create(
            name=name.strip()[:100],
            percent_off=percent_off,
            amount_off=amount_off,
            currency=currency,
            amounts_off=further,
            duration=duration,
            duration_periods=duration_periods if duration == Coupon.Duration.REPEATING else None,
            max_redemptions=max_redemptions,
            redeem_by=redeem_by,
            first_time_only=first_time_only,
        )
        coupon.plans.set(plans)
        audit_record(
            action="billing.coupon_created",
            actor=actor,
            target=coupon,
            details={
                "name": coupon.name,
                "percent_off": str(percent_off) if percent_off is not None else None,
                "amount_off": amount_off,
                "currency": currency,
                "amounts_off": further,
                "duration": duration,
                "duration_periods": coupon.duration_periods,
                "plans": [plan.public_id for plan in plans],
                "max_redemptions": max_redemptions,
            },
        )
    return coupon


def coupon_archive(*, coupon: Coupon, actor: User) -> Coupon:
    """Stop new redemptions of a coupon and of all its codes; discounts already applied keep
    running their course. Archiving twice changes nothing more. Audited."""
    return _archive(Coupon, coupon.pk, action="billing.coupon_archived", actor=actor)


_Archivable = TypeVar("_Archivable", Coupon, PromotionCode)


def _archive(model: type[_Archivable], pk: int, *, action: str, actor: User) -> _Archivable:
    _staff(actor)
    with transaction.atomic(durable=True):
        current = model.objects.select_for_update().get(pk=pk)
        if current.archived_at is None:
            current.archived_at = clock.now()
            current.save(update_fields=["archived_at"])
            audit_record(action=action, actor=actor, target=current)
    return current


def promotion_code_create(
    *,
    coupon: Coupon,
    code: str,
    max_redemptions: int | None = None,
    expires_at: dt.datetime | None = None,
    first_time_only: bool = False,
    actor: User,
) -> PromotionCode:
    """Create a customer-facing code for ``coupon``: 3 to 40 letters, digits, ``-`` or ``_``,
    stored upper-case and unique without regard to case; with its own limit, expiry and
    first-time-customer rule. Audited."""
    _staff(actor)
    normalized = discounts.code_normalize(code)
    if not discounts.CODE_PATTERN.match(normalized):
        raise _invalid("A code is 3 to 40 letters, digits, - or _.", "code")
    if max_redemptions is not None and max_redemptions < 1:
        raise _invalid("A redemption limit is at least 1.", "max_redemptions")
    if coupon.archived_at is not None:
        raise _invalid("This coupon is archived; create a new one.", "coupon")
    try:
        with transaction.atomic(durable=True):
            promotion = PromotionCode.objects.create(
                coupon=coupon,
                code=normalized,
                max_redemptions=max_redemptions,
                expires_at=expires_at,
                first_time_only=first_time_only,
            )
            audit_record(
                action="billing.promotion_code_created",
                actor=actor,
                target=promotion,
                details={"coupon": coupon.public_id, "code": normalized},
            )
    except IntegrityError as exc:
        raise Conflict(
            "That code exists already; choose another.", details={"field": "code"}
        ) from exc
    return promotion


def promotion_code_archive(*, promotion: PromotionCode, actor: User) -> PromotionCode:
    """Stop new redemptions of a code (its coupon's other codes keep working). Audited."""
    return _archive(
        PromotionCode, promotion.pk, action="billing.promotion_code_archived", actor=actor
    )


def subscription_discount_apply(
    *, subscription: Subscription, coupon: Coupon, actor: User, idempotency_key: str | None = None
) -> Discount:
    """Apply ``coupon`` to an existing subscription (staff): it counts as a redemption of the
    coupon and covers the invoices from the next one on (the first one if none was made yet), for
    the coupon's duration; a discount the subscription had ends now. Refused with
    ``PromotionCodeRefused`` as a code would be (expired, exhausted, not for this plan, first-time
    customers only), and for an ended subscription. Audited.

    With ``idempotency_key`` (a form's single-use token) it is done once per key of the customer:
    the same form sent again returns the first discount without counting another redemption."""
    _staff(actor)
    if idempotency_key is None:
        return _discount_apply(subscription=subscription, coupon=coupon, actor=actor, claim=None)
    return idempotent(
        scope=subscription.customer.public_id,
        key=idempotency_key,
        operation="subscription_discount_apply",
        parameters={"subscription": subscription.public_id, "coupon": coupon.public_id},
        result=_DISCOUNT_RESULT,
        work=lambda claim: _discount_apply(
            subscription=subscription, coupon=coupon, actor=actor, claim=claim
        ),
    )


_DISCOUNT_RESULT = PublicIdResult(Discount)


def _discount_apply(
    *, subscription: Subscription, coupon: Coupon, actor: User, claim: IdempotencyClaim | None
) -> Discount:
    now = clock.now()
    with transaction.atomic(durable=True):
        locks = lock_subscription(subscription)
        current = locks.subscription
        if current.status in SUBSCRIPTION_ENDED:
            raise _invalid("This subscription has ended.", "subscription")
        fresh = Coupon.objects.get(pk=coupon.pk)
        discounts.coupon_check(
            coupon=fresh,
            customer=locks.customer,
            price=current.price,
            now=now,
            subscription=current,
        )
        discount = discount_apply_locked(
            customer=locks.customer, subscription=current, coupon=fresh, promotion=None, now=now
        )
        subscription_event_publish(subscription=current, event_type="subscription.updated")
        if claim is not None:
            claim.checkpoint(_DISCOUNT_RESULT.dump(discount))
        audit_record(
            action="billing.discount_applied",
            actor=actor,
            target=current,
            details={
                "discount": discount.public_id,
                "coupon": fresh.public_id,
                "starts_at": discount.starts_at.isoformat(),
                "ends_at": discount.ends_at.isoformat() if discount.ends_at else None,
            },
        )
    return discount
