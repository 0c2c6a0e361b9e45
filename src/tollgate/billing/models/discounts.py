"""Coupons (what a discount takes off and for how long), promotion codes (the strings customers
type, each with its own limits) and discounts (a coupon applied to one subscription)."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from tollgate.billing.models.customers import Customer
from tollgate.billing.models.subscriptions import Subscription
from tollgate.catalog.models import Plan
from tollgate.core import clock
from tollgate.core.ids import new_public_id


def new_cpn_id() -> str:
    return new_public_id("cpn")


def new_promo_id() -> str:
    return new_public_id("promo")


def new_di_id() -> str:
    return new_public_id("di")


# The redemption counter never passes its limit: the last line of defence behind the conditional
# UPDATE that counts a redemption (``steps.discounts``).
_WITHIN_LIMIT = Q(max_redemptions__isnull=True) | Q(times_redeemed__lte=F("max_redemptions"))


class Redeemable(models.Model):
    """What coupons and promotion codes share: a redemption counter under an optional limit, and
    archiving (no new redemptions)."""

    max_redemptions = models.PositiveIntegerField(null=True, blank=True)
    times_redeemed = models.PositiveIntegerField(default=0, editable=False)
    first_time_only = models.BooleanField(default=False)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now, editable=False)

    class Meta:
        abstract = True


class Coupon(Redeemable):
    """What a discount takes off (a percentage, or a fixed amount in one or more currencies) and
    for how long: the first invoice only, ``duration_periods`` billing periods, or forever.

    Optionally only for some plans (``plans``; none means every plan), redeemable until
    ``redeem_by``, at most ``max_redemptions`` times in all, and by first-time customers only.
    Never edited once redeemed; archiving it stops new redemptions (discounts already applied
    keep running their course)."""

    class Duration(models.TextChoices):
        ONCE = "once", "Once (the first invoice)"
        REPEATING = "repeating", "A number of billing periods"
        FOREVER = "forever", "Forever"

    public_id = models.CharField(max_length=32, unique=True, default=new_cpn_id, editable=False)
    name = models.CharField(max_length=100)
    # Up to two decimals, 0 < percent_off <= 100; or a fixed amount in minor units of ``currency``.
    percent_off = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    amount_off = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    # A fixed amount's further currencies: ISO 4217 code -> minor units off (``coupon_create``
    # checks them). Null (a row from before) means none.
    amounts_off = models.JSONField(
        null=True,
        blank=True,
        default=dict,
        help_text='A fixed amount in further currencies, e.g. {"EUR": 900} (minor units)',
    )
    duration = models.CharField(max_length=16, choices=Duration.choices)
    duration_periods = models.PositiveSmallIntegerField(null=True, blank=True)
    plans = models.ManyToManyField(Plan, blank=True, related_name="+")
    redeem_by = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(percent_off__gt=0, percent_off__lte=100, amount_off__isnull=True, currency="")
                    | Q(
                        percent_off__isnull=True,
                        amount_off__gt=0,
                        currency__regex=r"^[A-Z]{3}$",
                    )
                ),
                name="coupon_percent_or_amount",
                violation_error_message=(
                    "Give either a percentage (more than 0, at most 100) or a fixed amount above "
                    "zero with its currency (ISO 4217, capitals)."
                ),
            ),
            models.CheckConstraint(
                condition=Q(duration="repeating", duration_periods__gte=1)
                | (Q(duration__in=["once", "forever"]) & Q(duration_periods__isnull=True)),
                name="coupon_duration_periods",
                violation_error_message=(
                    "A number of billing periods goes with the duration 'repeating' only."
                ),
            ),
            models.CheckConstraint(condition=_WITHIN_LIMIT, name="coupon_redemptions_within_limit"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class PromotionCode(Redeemable):
    """A customer-facing code for a coupon: stored upper-case and matched without regard to case;
    several per coupon, each with its own limit, expiry and first-time-customer rule (on top of
    the coupon's own)."""

    public_id = models.CharField(max_length=32, unique=True, default=new_promo_id, editable=False)
    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, related_name="promotion_codes")
    code = models.CharField(max_length=40, unique=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(code__regex=r"^[A-Z0-9][A-Z0-9_-]{2,39}$"),
                name="promotion_code_upper_case",
                violation_error_message="A code is 3 to 40 capital letters, digits, - or _.",
            ),
            models.CheckConstraint(
                condition=_WITHIN_LIMIT, name="promotion_code_redemptions_within_limit"
            ),
        ]

    def __str__(self) -> str:
        return self.code


class Discount(models.Model):
    """A coupon applied to a subscription: the invoices of the periods that start in
    ``[starts_at, ends_at)`` (no end: forever) carry its DISCOUNT line, where the coupon fits the
    price (its plans, its currency). One discount per subscription at a time; a replaced or
    removed one has ``ended_at``."""

    public_id = models.CharField(max_length=32, unique=True, default=new_di_id, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="discounts")
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, related_name="discounts"
    )
    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, related_name="discounts")
    promotion_code = models.ForeignKey(
        PromotionCode, on_delete=models.PROTECT, null=True, blank=True, related_name="discounts"
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subscription"],
                condition=Q(ended_at__isnull=True),
                name="discount_one_live_per_subscription",
            ),
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gt=F("starts_at")),
                name="discount_period_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id
