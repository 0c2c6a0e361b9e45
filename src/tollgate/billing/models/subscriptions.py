"""Subscriptions: a customer's plan, its period and status."""

from __future__ import annotations

from django.db import models
from django.db.models import BigIntegerField, Case, F, Q, When

from tollgate.billing.models.customers import Customer
from tollgate.billing.states import (
    SUBSCRIPTION_ENDED,
    SubscriptionStatus,
)
from tollgate.catalog.models import Price
from tollgate.core import clock
from tollgate.core.ids import (
    new_sub_id,
)


class Subscription(models.Model):
    """A customer's subscription to a price. Periods follow ``billing_anchor`` (see periods.py).

    ``seats`` counts what a per-seat price is paid for (1 on a flat price, where it means
    nothing); ``scheduled_seats`` is fewer seats from ``current_period_end`` on.
    ``scheduled_price`` is a change that takes effect at ``current_period_end`` (a downgrade);
    ``cancel_at_period_end`` ends it then. ``canceled_at`` is when cancellation was asked for and
    ``ended_at`` when the subscription actually ended.
    """

    class CancellationReason(models.TextChoices):
        """Why the customer asked to cancel (the short survey of the cancel page)."""

        TOO_EXPENSIVE = "too_expensive", "It costs too much"
        MISSING_FEATURES = "missing_features", "It lacks features I need"
        SWITCHED_SERVICE = "switched_service", "I moved to another service"
        NOT_USING = "not_using", "I don't use it enough"
        TECHNICAL_ISSUES = "technical_issues", "Technical problems"
        OTHER = "other", "Something else"

    public_id = models.CharField(max_length=32, unique=True, default=new_sub_id, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="subscriptions")
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=24, choices=SubscriptionStatus.choices)
    billing_anchor = models.DateTimeField()
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    trial_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    canceled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    scheduled_price = models.ForeignKey(
        Price, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # ``db_default``: the previous release, which knows nothing of seats, can still insert rows.
    seats = models.PositiveIntegerField(default=1, db_default=1)
    scheduled_seats = models.PositiveIntegerField(null=True, blank=True)
    # The customer's answer to the cancellation survey, kept with ``canceled_at``.
    cancellation_reason = models.CharField(
        max_length=24, choices=CancellationReason.choices, blank=True
    )
    cancellation_comment = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=clock.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer"],
                condition=~Q(status__in=sorted(SUBSCRIPTION_ENDED)),
                name="subscription_one_live_per_customer",
            ),
            models.CheckConstraint(
                condition=Q(status__in=SubscriptionStatus.values), name="subscription_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(current_period_end__gt=F("current_period_start")),
                name="subscription_period_ordered",
            ),
            models.CheckConstraint(
                condition=(
                    Q(status__in=sorted(SUBSCRIPTION_ENDED), ended_at__isnull=False)
                    | (~Q(status__in=sorted(SUBSCRIPTION_ENDED)) & Q(ended_at__isnull=True))
                ),
                name="subscription_ended_at_iff_ended",
            ),
            models.CheckConstraint(
                condition=~Q(status=SubscriptionStatus.TRIALING) | Q(trial_end__isnull=False),
                name="subscription_trialing_has_trial_end",
            ),
            models.CheckConstraint(
                condition=Q(scheduled_price__isnull=True) | ~Q(scheduled_price=F("price")),
                name="subscription_scheduled_price_differs",
            ),
            models.CheckConstraint(condition=Q(seats__gte=1), name="subscription_seats_positive"),
            models.CheckConstraint(
                condition=Q(scheduled_seats__isnull=True)
                | (Q(scheduled_seats__gte=1) & ~Q(scheduled_seats=F("seats"))),
                name="subscription_scheduled_seats_valid",
            ),
        ]
        indexes = [
            models.Index(
                fields=["current_period_end"],
                condition=Q(
                    status__in=[
                        SubscriptionStatus.TRIALING,
                        SubscriptionStatus.ACTIVE,
                        SubscriptionStatus.PAST_DUE,
                    ]
                ),
                name="subscription_due",
            ),
            # The billing clock's expiry of incomplete subscriptions.
            models.Index(
                fields=["customer"],
                condition=Q(status=SubscriptionStatus.INCOMPLETE),
                name="subscription_incomplete",
            ),
            # The API's list, newest first.
            models.Index(fields=["created_at", "id"], name="subscription_created"),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def amount(self) -> int:
        """What one period of the current price costs for the subscription's seats."""
        return self.price.amount_for(self.seats)

    @property
    def seats_next(self) -> int:
        """The seats paid for from ``current_period_end`` on (a decrease waits for it)."""
        return self.scheduled_seats or self.seats


# ``Subscription.amount`` in SQL: what one period costs for the subscription's seats.
SUBSCRIPTION_AMOUNT = Case(
    When(price__per_seat=True, then=F("price__amount") * F("seats")),
    default=F("price__amount"),
    output_field=BigIntegerField(),
)
