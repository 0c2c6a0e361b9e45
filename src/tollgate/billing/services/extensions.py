"""Staff's free extension of a subscription's current period (or trial): one durable transaction
under ``lock_subscription``, audited, its event in the outbox; once per form token."""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing.errors import TransitionRefused
from tollgate.billing.locks import lock_subscription
from tollgate.billing.models import Subscription
from tollgate.billing.states import SubscriptionStatus
from tollgate.billing.steps.subscriptions import (
    subscription_event_publish,
    subscription_period_open_check,
)
from tollgate.core import clock
from tollgate.core.errors import PermissionDenied, ValidationFailed
from tollgate.core.idempotency import IdempotencyClaim, PublicIdResult, idempotent

_SUBSCRIPTION_RESULT = PublicIdResult(Subscription)

EXTEND_MAX_DAYS = 366


_EXTENDABLE = frozenset({SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE})


def subscription_extend(
    *,
    subscription: Subscription,
    days: int,
    reason: str,
    actor: User,
    idempotency_key: str | None = None,
) -> Subscription:
    """Give a subscription ``days`` (1 to 366) more of its current period, free: by staff, with a
    reason, audited. No money moves and no status changes.

    The rule: the current period's end moves ``days`` later, and the billing schedule is anchored
    on that new end (``billing_anchor = current_period_end``), so the next period starts exactly
    where the extended one ends and keeps the plan's length from there (``periods.py``: the day of
    the month may change, as it does when an interval change starts a new schedule). Whatever waits
    for the period end (a renewal, a scheduled plan change, a cancellation at period end) happens
    at the new end.

    - ``trialing``: the trial is extended; ``trial_end`` moves with the period end (they are one
      moment during a trial), and the trial converts at the new end as before.
    - ``active``: the paid period is extended; its invoice stays as it was (finalized invoices
      never change), and the next renewal invoice starts at the new end.
    - Any other status is refused (``TransitionRefused``): a past-due, unpaid or incomplete
      subscription owes an invoice for the period it is in (extending would not settle it), and an
      ended one has no period left. A period that has already ended is being renewed: refused too.

    With ``idempotency_key`` (a form's single-use token) the extension is done once per key of the
    customer: submitting the same form again returns the subscription without extending it twice.
    """
    if not actor.is_staff:
        raise PermissionDenied("Only staff can extend subscriptions.")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= EXTEND_MAX_DAYS:
        raise ValidationFailed(
            f"Extend by a whole number of days from 1 to {EXTEND_MAX_DAYS}.",
            details={"field": "days"},
        )
    if not reason.strip():
        raise ValidationFailed("Say why the subscription is extended.", details={"field": "reason"})
    if idempotency_key is None:
        return _subscription_extend(
            subscription=subscription, days=days, reason=reason, actor=actor, claim=None
        )
    return idempotent(
        scope=subscription.customer.public_id,
        key=idempotency_key,
        operation="subscription_extend",
        parameters={"subscription": subscription.public_id, "days": days, "reason": reason},
        result=_SUBSCRIPTION_RESULT,
        work=lambda claim: _subscription_extend(
            subscription=subscription, days=days, reason=reason, actor=actor, claim=claim
        ),
    )


def _subscription_extend(
    *,
    subscription: Subscription,
    days: int,
    reason: str,
    actor: User,
    claim: IdempotencyClaim | None,
) -> Subscription:
    now = clock.now()
    with transaction.atomic(durable=True):
        current = lock_subscription(subscription).subscription
        if current.status not in _EXTENDABLE:
            raise TransitionRefused(
                f"A {current.status} subscription cannot be extended; only a trialing or active "
                "one can.",
                details={"object": "subscription", "from": current.status},
            )
        subscription_period_open_check(subscription=current, now=now)
        before = {
            "current_period_end": current.current_period_end.isoformat(),
            "billing_anchor": current.billing_anchor.isoformat(),
            "trial_end": current.trial_end.isoformat() if current.trial_end else None,
        }
        new_end = current.current_period_end + dt.timedelta(days=days)
        current.current_period_end = new_end
        current.billing_anchor = new_end
        if current.status == SubscriptionStatus.TRIALING:
            current.trial_end = new_end
        current.save(update_fields=["current_period_end", "billing_anchor", "trial_end"])
        subscription_event_publish(subscription=current, event_type="subscription.updated")
        if claim is not None:
            claim.checkpoint(_SUBSCRIPTION_RESULT.dump(current))
        audit_record(
            action="billing.subscription_extended",
            actor=actor,
            target=current,
            details={
                "days": days,
                "reason": reason.strip(),
                "status": current.status,
                "before": before,
                "current_period_end": new_end.isoformat(),
                "trial_end": current.trial_end.isoformat() if current.trial_end else None,
            },
        )
    return current
