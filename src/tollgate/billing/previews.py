"""What a plan change would do, before it is done (read-only).

``subscription_change_price`` and the change-plan page both ask this module: when a change takes
effect (``change_timing``) and what a mid-period upgrade is prorated to (``upgrade_proration``), so
the preview a customer confirms is the arithmetic the invoice is then built from.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from tollgate.billing import periods, proration
from tollgate.billing.models import Subscription
from tollgate.billing.states import SubscriptionStatus
from tollgate.catalog.models import Price


class ChangeTiming(StrEnum):
    NOW = "now"  # an upgrade, prorated and charged at once
    TRIAL = "trial"  # an upgrade during a trial: the price changes, nothing is charged
    PERIOD_END = "period_end"  # a downgrade or a change of interval, scheduled


def change_timing(*, subscription: Subscription, price: Price) -> ChangeTiming:
    """When moving ``subscription`` to ``price`` takes effect: an upgrade (a higher amount for the
    same billing interval) now, anything else at the end of the current period."""
    old = subscription.price
    same_interval = periods.interval_months(
        interval=price.interval, interval_count=price.interval_count
    ) == periods.interval_months(interval=old.interval, interval_count=old.interval_count)
    if not same_interval or price.amount <= old.amount:
        return ChangeTiming.PERIOD_END
    if subscription.status == SubscriptionStatus.TRIALING:
        return ChangeTiming.TRIAL
    return ChangeTiming.NOW


@dataclass(frozen=True, slots=True)
class UpgradeAmounts:
    """The two lines of a mid-period upgrade and the part of the period they cover."""

    proration: proration.UpgradeProration
    remaining: periods.Period


def upgrade_proration(
    *, subscription: Subscription, price: Price, at: dt.datetime
) -> UpgradeAmounts:
    """Prorate moving ``subscription`` from its price to ``price`` at ``at`` (``proration.upgrade``
    over the current period); the invoice of the upgrade is built from exactly this."""
    period = periods.Period(
        start=subscription.current_period_start, end=subscription.current_period_end
    )
    return UpgradeAmounts(
        proration=proration.upgrade(
            old_amount=subscription.price.amount, new_amount=price.amount, period=period, at=at
        ),
        remaining=periods.Period(start=max(at, period.start), end=period.end),
    )


@dataclass(frozen=True, slots=True)
class ChangePreview:
    """What confirming a change to ``price`` would do, as of ``at``."""

    price: Price
    timing: ChangeTiming
    currency: str
    # Charged now (an upgrade): the debit for the remaining time minus the credit for the unused time.
    credit: int = 0
    debit: int = 0
    # When a scheduled change takes effect and what is charged then.
    effective_at: dt.datetime | None = None

    @property
    def due_now(self) -> int:
        return self.debit - self.credit


def change_preview(*, subscription: Subscription, price: Price, at: dt.datetime) -> ChangePreview:
    """Preview moving ``subscription`` to ``price`` at ``at`` without changing anything."""
    timing = change_timing(subscription=subscription, price=price)
    if timing == ChangeTiming.NOW:
        amounts = upgrade_proration(subscription=subscription, price=price, at=at).proration
        return ChangePreview(
            price=price,
            timing=timing,
            currency=price.currency,
            credit=amounts.credit,
            debit=amounts.debit,
        )
    effective_at = subscription.trial_end if timing == ChangeTiming.TRIAL else None
    return ChangePreview(
        price=price,
        timing=timing,
        currency=price.currency,
        effective_at=effective_at or subscription.current_period_end,
    )
