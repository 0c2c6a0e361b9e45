"""Every status of subscriptions, invoices, payments and refunds, and every allowed transition.

Subscription statuses mean what they mean at Stripe:

- ``incomplete``: created, the first payment has not succeeded yet;
- ``incomplete_expired``: the first payment never succeeded in time; the subscription ended;
- ``trialing``: in a free trial;
- ``active``: paid up;
- ``past_due``: a renewal payment failed and is being retried (dunning);
- ``unpaid``: retries are exhausted; the subscription stays on record, without access, until paid;
- ``canceled``: ended for good.

Anything not in a table below is refused with :class:`TransitionRefused` (HTTP 409), which is the only
way a status changes in the services.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.db import models

from tollgate.billing.errors import TransitionRefused


class SubscriptionStatus(models.TextChoices):
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    CANCELED = "canceled"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    UNCOLLECTIBLE = "uncollectible"
    VOID = "void"


class PaymentStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REQUIRES_ACTION = "requires_action"
    UNKNOWN = "unknown"


class RefundStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# A subscription that has ended never comes back; a new one is started instead.
SUBSCRIPTION_ENDED = frozenset({SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED})
# A renewal could not be charged: the customer should fix the card (the past-due banner).
SUBSCRIPTION_PAYMENT_OVERDUE = frozenset({SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID})
# What may change its plan or its seats.
SUBSCRIPTION_CHANGEABLE = frozenset(
    {SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE}
)

# Payment attempts that have moved money or may still move it: while one exists for an invoice, no
# other attempt may start (an ``unknown`` outcome is asked about first, never retried blindly).
PAYMENT_LIVE = frozenset(
    {
        PaymentStatus.PENDING,
        PaymentStatus.SUCCEEDED,
        PaymentStatus.REQUIRES_ACTION,
        PaymentStatus.UNKNOWN,
    }
)


@dataclass(frozen=True, eq=False)
class StateMachine:
    name: str
    transitions: Mapping[str, frozenset[str]]

    def allows(self, current: str, target: str) -> bool:
        return target in self.transitions.get(current, frozenset())

    def check(self, *, current: str, target: str) -> str:
        """Return ``target`` if ``current -> target`` is allowed; raise TransitionRefused otherwise."""
        if not self.allows(current, target):
            raise TransitionRefused(
                f"A {self.name} cannot go from {current} to {target}.",
                details={"object": self.name, "from": current, "to": target},
            )
        return target


_S = SubscriptionStatus
SUBSCRIPTION = StateMachine(
    name="subscription",
    transitions={
        # First payment succeeds; it never does in time; the customer abandons checkout.
        _S.INCOMPLETE: frozenset({_S.ACTIVE, _S.INCOMPLETE_EXPIRED, _S.CANCELED}),
        _S.INCOMPLETE_EXPIRED: frozenset(),
        # Trial ends paid (or free); its first charge fails; it ends without a card and the plan
        # asks for one (incomplete) or for the end (canceled).
        _S.TRIALING: frozenset({_S.ACTIVE, _S.PAST_DUE, _S.INCOMPLETE, _S.CANCELED}),
        _S.ACTIVE: frozenset({_S.PAST_DUE, _S.CANCELED}),
        # Paid after a retry; retries exhausted (as the dunning setting says: unpaid or canceled).
        _S.PAST_DUE: frozenset({_S.ACTIVE, _S.UNPAID, _S.CANCELED}),
        _S.UNPAID: frozenset({_S.ACTIVE, _S.CANCELED}),
        _S.CANCELED: frozenset(),
    },
)

_I = InvoiceStatus
INVOICE = StateMachine(
    name="invoice",
    transitions={
        _I.DRAFT: frozenset({_I.OPEN}),
        _I.OPEN: frozenset({_I.PAID, _I.UNCOLLECTIBLE, _I.VOID}),
        # Written off, then paid after all, or voided (as at Stripe).
        _I.UNCOLLECTIBLE: frozenset({_I.PAID, _I.VOID}),
        _I.PAID: frozenset(),
        _I.VOID: frozenset(),
    },
)

_P = PaymentStatus
PAYMENT = StateMachine(
    name="payment",
    transitions={
        _P.PENDING: frozenset({_P.SUCCEEDED, _P.FAILED, _P.REQUIRES_ACTION, _P.UNKNOWN}),
        # The customer authenticates (or gives up, or the authentication window closes).
        _P.REQUIRES_ACTION: frozenset({_P.SUCCEEDED, _P.FAILED}),
        # The gateway, asked what happened, has the final word.
        _P.UNKNOWN: frozenset({_P.SUCCEEDED, _P.FAILED, _P.REQUIRES_ACTION}),
        _P.SUCCEEDED: frozenset(),
        _P.FAILED: frozenset(),
    },
)

_R = RefundStatus
REFUND = StateMachine(
    name="refund",
    transitions={
        _R.PENDING: frozenset({_R.SUCCEEDED, _R.FAILED}),
        _R.SUCCEEDED: frozenset(),
        _R.FAILED: frozenset(),
    },
)
