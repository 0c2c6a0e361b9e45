"""Subscription steps: status changes through the transition table, with their events.

Steps run inside the caller's transaction on rows the caller has locked (``billing.locks``); they
never open a transaction or call a gateway."""

from __future__ import annotations

import datetime as dt
import secrets

from tollgate.billing.emails import billing_links
from tollgate.billing.entitlements import entitlements_changed
from tollgate.billing.errors import TransitionRefused
from tollgate.billing.models import Customer, Subscription
from tollgate.billing.states import SUBSCRIPTION, SubscriptionStatus
from tollgate.core.events import event_publish
from tollgate.core.money import Money
from tollgate.notifications.services import email_send_template


def subscription_event_publish(*, subscription: Subscription, event_type: str) -> None:
    """Publish ``event_type`` about ``subscription`` for the operator's product, in the current
    transaction; each call reports a change of its own."""
    event_publish(
        event_type=event_type,
        object_type="subscription",
        object_id=subscription.public_id,
        key=f"{subscription.public_id}:{secrets.token_hex(8)}",
    )


def subscription_period_open_check(*, subscription: Subscription, now: dt.datetime) -> None:
    """Refuse a change once the current period has ended: its renewal is due (or running), and
    the change would be decided against a period that is over."""
    if now >= subscription.current_period_end:
        raise TransitionRefused(
            "The current period has ended and is being renewed; try again in a minute.",
            details={"object": "subscription", "from": subscription.status},
        )


def subscription_move_locked(*, subscription: Subscription, target: SubscriptionStatus) -> None:
    """Change the status as the transition table allows; the cached entitlements go after commit."""
    subscription.status = SUBSCRIPTION.check(current=subscription.status, target=target)
    subscription.save(update_fields=["status"])
    entitlements_changed(customer=subscription.customer)
    subscription_event_publish(
        subscription=subscription,
        event_type="subscription.past_due"
        if target == SubscriptionStatus.PAST_DUE
        else "subscription.updated",
    )


def subscription_end_locked(
    *, subscription: Subscription, status: SubscriptionStatus, at: dt.datetime
) -> None:
    """End the subscription at ``at`` (canceled or incomplete_expired); nothing stays scheduled."""
    subscription.status = SUBSCRIPTION.check(current=subscription.status, target=status)
    subscription.ended_at = at
    subscription.cancel_at_period_end = False
    subscription.scheduled_price = None
    subscription.scheduled_seats = None
    subscription.save(
        update_fields=[
            "status",
            "ended_at",
            "cancel_at_period_end",
            "scheduled_price",
            "scheduled_seats",
        ]
    )
    entitlements_changed(customer=subscription.customer)
    subscription_event_publish(
        subscription=subscription,
        event_type="subscription.canceled"
        if status == SubscriptionStatus.CANCELED
        else "subscription.updated",
    )


def subscription_canceled_notify(
    *, customer: Customer, subscription: Subscription, refunded: int, now: dt.datetime
) -> None:
    """Email the customer that the subscription is canceled (and what was refunded), via the outbox."""
    price = subscription.price
    email_send_template(
        to=customer.email,
        template="billing_subscription_canceled",
        context={
            **billing_links(),
            "plan": price.plan.name,
            "at_period_end": subscription.cancel_at_period_end,
            "ends_on": f"{subscription.current_period_end:%B %-d, %Y}",
            "ended_on": f"{now:%B %-d, %Y}",
            "refund": Money(refunded, price.currency).format() if refunded else "",
        },
        dedupe_key=f"billing_subscription_canceled:{subscription.public_id}:{now.isoformat()}",
    )
