"""What a plan change would do, before it is done (read-only).

``subscription_change_price`` and the change-plan page both ask this module: when a change takes
effect (``change_timing``) and what a mid-period upgrade is prorated to (``upgrade_proration``), so
the preview a customer confirms is the arithmetic the invoice is then built from.

With a discount that covers the current period (``discounts.discount_covers`` at its start), the
credit is for the unused time of what was paid after the discount (the old price's unused part
less the unused part of its discount), and the new price's remaining time is discounted as the
coupon would discount the new price for the whole period (the discount's unused part, rounded up),
if the coupon fits it. Every part rounds in the customer's favour, and the credit is capped so the
upgrade never pays the customer out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from enum import StrEnum

from tollgate.billing import discounts, periods, proration
from tollgate.billing.gateways.registry import gateway_charge_step
from tollgate.billing.models import Discount, Subscription
from tollgate.billing.states import SubscriptionStatus
from tollgate.catalog.models import Price


class ChangeTiming(StrEnum):
    NOW = "now"  # an upgrade, prorated and charged at once
    TRIAL = "trial"  # an upgrade during a trial: the price changes, nothing is charged
    PERIOD_END = "period_end"  # a downgrade or a change of interval, scheduled


def change_timing(
    *, subscription: Subscription, price: Price, seats: int | None = None
) -> ChangeTiming:
    """When moving ``subscription`` to ``price`` (for ``seats`` seats, by default its own) takes
    effect: an upgrade (a higher amount for the same billing interval) now, anything else at the
    end of the current period."""
    old = subscription.price
    same_interval = periods.interval_months(
        interval=price.interval, interval_count=price.interval_count
    ) == periods.interval_months(interval=old.interval, interval_count=old.interval_count)
    new_amount = price.amount_for(seats or subscription.seats)
    if not same_interval or new_amount <= subscription.amount:
        return ChangeTiming.PERIOD_END
    if subscription.status == SubscriptionStatus.TRIALING:
        return ChangeTiming.TRIAL
    return ChangeTiming.NOW


@dataclass(frozen=True, slots=True)
class UpgradeAmounts:
    """The lines of a mid-period upgrade and the part of the period they cover: the credit, the
    charge and what the subscription's discount takes off that charge (``discount``)."""

    proration: proration.UpgradeProration
    remaining: periods.Period
    discount: int = 0
    coupon: Discount | None = None


def upgrade_proration(
    *, subscription: Subscription, price: Price, at: dt.datetime, seats: int | None = None
) -> UpgradeAmounts:
    """Prorate moving ``subscription`` from its price to ``price`` (for ``seats`` seats, by default
    its own) at ``at`` (``proration.upgrade`` over the current period, net of its discount: see the
    module docstring), every part in the configured gateway's charge steps; the invoice of the
    upgrade is built from exactly this."""
    period = periods.Period(
        start=subscription.current_period_start, end=subscription.current_period_end
    )
    old, step = subscription.price, gateway_charge_step(price.currency)
    old_amount, new_amount = subscription.amount, price.amount_for(seats or subscription.seats)
    listed = proration.upgrade(
        old_amount=old_amount, new_amount=new_amount, period=period, at=at, step=step
    )
    discount = discounts.discounts_live([subscription.pk]).get(subscription.pk)

    def off(on: Price, amount: int) -> int:
        return discounts.discount_amount_for(
            discount=discount, price=on, amount=amount, period_start=period.start, step=step
        )

    old_off, new_off = off(old, old_amount), off(price, new_amount)
    discounted = (
        proration.split(amount=new_off, period=period, at=at, step=step).unused if new_off else 0
    )
    discounted = min(discounted, listed.debit)
    credit = proration.split(amount=old_amount, period=period, at=at, step=step).unused
    credit -= proration.remaining_charge(amount=old_off, period=period, at=at, step=step)
    return UpgradeAmounts(
        proration=proration.UpgradeProration(
            credit=max(0, min(credit, listed.debit - discounted)), debit=listed.debit
        ),
        remaining=periods.Period(start=max(at, period.start), end=period.end),
        discount=discounted,
        coupon=discount if discounted else None,
    )


def seats_proration(*, subscription: Subscription, seats: int, at: dt.datetime) -> UpgradeAmounts:
    """Prorate adding seats to ``subscription`` (on a per-seat price) at ``at``, up to ``seats``:
    the added seats' price for the remaining time (rounded down) less what the subscription's
    discount takes off it for that time (the growth of the discount's amount, rounded up); no
    credit. The invoice of the added seats is built from exactly this."""
    period = periods.Period(
        start=subscription.current_period_start, end=subscription.current_period_end
    )
    price, step = subscription.price, gateway_charge_step(subscription.price.currency)
    old_amount, new_amount = subscription.amount, price.amount_for(seats)
    debit = proration.remaining_charge(
        amount=new_amount - old_amount, period=period, at=at, step=step
    )
    discount = discounts.discounts_live([subscription.pk]).get(subscription.pk)

    def off(amount: int) -> int:
        return discounts.discount_amount_for(
            discount=discount, price=price, amount=amount, period_start=period.start, step=step
        )

    grown = off(new_amount) - off(old_amount)
    discounted = (
        min(proration.split(amount=grown, period=period, at=at, step=step).unused, debit)
        if grown > 0
        else 0
    )
    return UpgradeAmounts(
        proration=proration.UpgradeProration(credit=0, debit=debit),
        remaining=periods.Period(start=max(at, period.start), end=period.end),
        discount=discounted,
        coupon=discount if discounted else None,
    )


@dataclass(frozen=True, slots=True)
class SeatsPreview:
    """What confirming ``seats`` seats would do, as of ``at``: more seats are charged now (the
    added seats for the remaining time, less the discount), fewer take effect at
    ``effective_at`` (the period end); during a trial both take effect now, free."""

    seats: int
    currency: str
    debit: int = 0
    discount: int = 0
    effective_at: dt.datetime | None = None
    # What each period costs with these seats (before any discount).
    period_amount: int = 0

    @property
    def due_now(self) -> int:
        return self.debit - self.discount


def seats_preview(*, subscription: Subscription, seats: int, at: dt.datetime) -> SeatsPreview:
    """Preview giving ``subscription`` ``seats`` seats without changing anything."""
    price = subscription.price
    preview = SeatsPreview(
        seats=seats, currency=price.currency, period_amount=price.amount_for(seats)
    )
    if subscription.status == SubscriptionStatus.TRIALING:
        return preview
    if seats > subscription.seats:
        added = seats_proration(subscription=subscription, seats=seats, at=at)
        return replace(preview, debit=added.proration.debit, discount=added.discount)
    if seats < subscription.seats:
        return replace(preview, effective_at=subscription.current_period_end)
    return preview


@dataclass(frozen=True, slots=True)
class ChangePreview:
    """What confirming a change to ``price`` would do, as of ``at``."""

    price: Price
    timing: ChangeTiming
    currency: str
    # Charged now (an upgrade): the debit for the remaining time minus the credit for the unused time
    # and the discount on the debit.
    credit: int = 0
    debit: int = 0
    discount: int = 0
    # When a scheduled change takes effect and what is charged then.
    effective_at: dt.datetime | None = None

    @property
    def due_now(self) -> int:
        return self.debit - self.credit - self.discount


def change_preview(
    *, subscription: Subscription, price: Price, at: dt.datetime, seats: int | None = None
) -> ChangePreview:
    """Preview moving ``subscription`` to ``price`` (for ``seats`` seats, by default its own) at
    ``at`` without changing anything."""
    timing = change_timing(subscription=subscription, price=price, seats=seats)
    if timing == ChangeTiming.NOW:
        upgrade = upgrade_proration(subscription=subscription, price=price, at=at, seats=seats)
        return ChangePreview(
            price=price,
            timing=timing,
            currency=price.currency,
            credit=upgrade.proration.credit,
            debit=upgrade.proration.debit,
            discount=upgrade.discount,
        )
    effective_at = subscription.trial_end if timing == ChangeTiming.TRIAL else None
    return ChangePreview(
        price=price,
        timing=timing,
        currency=price.currency,
        effective_at=effective_at or subscription.current_period_end,
    )
