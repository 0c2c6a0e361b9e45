from __future__ import annotations

from django.db import models
from django.db.models import Q

from tollgate.core.ids import new_plan_id, new_price_id, new_prod_id
from tollgate.core.money import Money

# A limit of -1 means no limit ("unlimited"); every other limit is a count from 0.
UNLIMITED = -1


class Product(models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=new_prod_id, editable=False)
    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name


class TrialEndWithoutCard(models.TextChoices):
    CANCELED = "canceled", "The subscription ends"
    INCOMPLETE = "incomplete", "The subscription waits for a card (incomplete)"


class Plan(models.Model):
    """A tier: what a customer is entitled to (features on/off, numeric limits) and its trial."""

    public_id = models.CharField(max_length=32, unique=True, default=new_plan_id, editable=False)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="plans")
    code = models.SlugField(max_length=64)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    features = models.JSONField(default=dict, blank=True, help_text="feature code -> true/false")
    limits = models.JSONField(
        default=dict, blank=True, help_text="limit code -> whole number (-1: no limit)"
    )
    api_rate_limits = models.JSONField(
        default=dict,
        blank=True,
        help_text="How fast customer API keys may call, per operation class (read, write, usage, "
        'check) or "default": e.g. {"default": "600/minute"}. Empty: the installation\'s rates.',
    )
    trial_days = models.PositiveIntegerField(default=0)
    trial_requires_card = models.BooleanField(
        default=False, help_text="A card must be saved before the trial starts"
    )
    trial_end_without_card = models.CharField(
        max_length=16,
        choices=TrialEndWithoutCard.choices,
        blank=True,
        help_text=(
            "What a trial that ends without a card becomes; blank: the installation's setting "
            "(TOLLGATE_TRIAL_END_WITHOUT_CARD)"
        ),
    )
    display_order = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["display_order", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["product", "code"], name="plan_code_unique_per_product"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Price(models.Model):
    """What a plan costs per interval. Never edited once used: a new price replaces it."""

    class Interval(models.TextChoices):
        MONTH = "month"
        YEAR = "year"

    public_id = models.CharField(max_length=32, unique=True, default=new_price_id, editable=False)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="prices")
    amount = models.BigIntegerField(help_text="In minor units (cents)")
    currency = models.CharField(max_length=3)
    interval = models.CharField(max_length=8, choices=Interval.choices)
    interval_count = models.PositiveSmallIntegerField(default=1)
    per_seat = models.BooleanField(
        default=False,
        db_default=False,
        help_text="The amount is per seat: a subscription pays it once for each of its seats, "
        "and its organisation has at most that many members",
    )
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["plan__display_order", "interval", "amount"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="price_amount_not_negative"),
            models.CheckConstraint(
                condition=Q(interval_count__gte=1) & Q(interval_count__lte=36),
                name="price_interval_count_range",
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="price_currency_iso4217"
            ),
            models.UniqueConstraint(
                fields=["plan", "currency", "interval", "interval_count"],
                condition=Q(active=True),
                name="price_one_active_per_plan_term",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan} {self.money} / {self.interval}"

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)

    def amount_for(self, seats: int) -> int:
        """What ``seats`` seats cost per interval: the amount once for a flat price, once per seat
        for a per-seat price."""
        return self.amount * seats if self.per_seat else self.amount


class Metric(models.Model):
    """A limit key plans share (``api_calls_per_month``, ``projects``) and how its usage counts:
    ``period`` usage starts again at zero each month of the subscription (on its anchor day),
    ``level`` usage is a running level that only reported changes move (projects, seats)."""

    class Reset(models.TextChoices):
        PERIOD = "period", "Starts at zero each month"
        LEVEL = "level", "A running level (never reset)"

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=120, help_text="What people read, e.g. API calls per month")
    unit = models.CharField(
        max_length=40, blank=True, help_text="Shown after the number, e.g. GB; blank for a count"
    )
    reset = models.CharField(max_length=8, choices=Reset.choices, default=Reset.PERIOD)
    display_order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["display_order", "code"]

    def __str__(self) -> str:
        return self.name


class Feature(models.Model):
    """A feature key plans switch on or off (``sso``, ``api_access``) and the name people read."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=120, help_text="What people read, e.g. SSO")
    description = models.TextField(blank=True)
    display_order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["display_order", "code"]

    def __str__(self) -> str:
        return self.name
