"""Subscription writes: start (the checkout), cancel (now or at the period end, optionally with a
prorated refund), resume, change price (an upgrade now, anything else at the period end), drop a
scheduled change (the staff's free extension: ``services.extensions``). Each is one durable
transaction under
``lock_subscription``, audited, its events and emails in the outbox; a charge it needs is made
after commit by ``services.payments.invoice_charge``."""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing import periods, previews
from tollgate.billing.discounts import code_normalize
from tollgate.billing.emails import subscription_confirmation_send
from tollgate.billing.entitlements import entitlements_changed
from tollgate.billing.errors import (
    PaymentInProgress,
    PaymentMethodRequired,
    SubscriptionExists,
    TransitionRefused,
)
from tollgate.billing.gateways.registry import gateway_charge_step
from tollgate.billing.locks import lock_customer, lock_subscription, lock_subscription_invoices
from tollgate.billing.models import Customer, Invoice, PaymentAttempt, Refund, Subscription
from tollgate.billing.periods import price_months
from tollgate.billing.seats import (
    members_count,
    seats_checked,
    seats_following,
    seats_for_price,
    seats_for_start,
)
from tollgate.billing.selectors import payment_method_default
from tollgate.billing.services.payments import invoice_charge
from tollgate.billing.services.refunds import refund_send
from tollgate.billing.states import (
    PAYMENT_LIVE,
    SUBSCRIPTION,
    SUBSCRIPTION_CHANGEABLE,
    SUBSCRIPTION_ENDED,
    InvoiceStatus,
    SubscriptionStatus,
)
from tollgate.billing.steps.discounts import promotion_code_redeem_locked
from tollgate.billing.steps.invoices import (
    invoice_draft_for_period_locked,
    invoice_finalize_locked,
    invoice_void_locked,
    upgrade_invoice_locked,
)
from tollgate.billing.steps.refunds import unused_time_refunds_locked
from tollgate.billing.steps.subscriptions import (
    subscription_canceled_notify,
    subscription_end_locked,
    subscription_event_publish,
    subscription_period_open_check,
)
from tollgate.catalog.models import Price
from tollgate.core import clock
from tollgate.core.errors import ValidationFailed
from tollgate.core.idempotency import IdempotencyClaim, PublicIdResult, idempotent

# What a keyed request stores as its result: the object's public id, read back fresh on a replay.
_SUBSCRIPTION_RESULT = PublicIdResult(Subscription)


def subscription_start(
    *,
    customer: Customer,
    price: Price,
    trial: bool = True,
    actor: User | None = None,
    idempotency_key: str,
    promotion_code: str = "",
    seats: int | None = None,
) -> Subscription:
    """Start ``customer`` on ``price`` (the checkout); a customer has at most one subscription that
    has not ended. A per-seat price is paid for ``seats`` seats, by default one per member of the
    customer's organisation, never fewer (``SeatsBelowMembers``).

    With ``promotion_code`` (any case) its coupon is applied (``steps.discounts``): the invoices
    it covers carry a DISCOUNT line, the first one too; a code that cannot be used here refuses
    the whole checkout with ``PromotionCodeRefused`` saying why, and nothing is counted.

    With a trial (``trial`` and the plan has trial days) the subscription is ``trialing`` until the
    trial ends and nothing is charged now; a card is needed only if the plan says so
    (``trial_requires_card``); its billing periods are anchored on the trial's end. Without one it is ``incomplete`` and its first invoice is created and finalized in
    the same transaction, then charged on session: the subscription becomes ``active`` when that
    payment succeeds (at once for a free price) and stays ``incomplete`` otherwise.

    Done once per ``idempotency_key`` of the customer: the same request again returns the same
    subscription, a different request with the key is refused (422), and while the first is still
    running a duplicate gets a conflict (409). Without the key, two checkouts at once still make one
    subscription: the second is refused with ``SubscriptionExists``.
    """
    return idempotent(
        scope=customer.public_id,
        key=idempotency_key,
        operation="subscription_start",
        parameters={
            "price": price.public_id,
            "trial": trial,
            # Only with a code: the request without one stays what it was.
            **({"code": code_normalize(promotion_code)} if promotion_code.strip() else {}),
            **({"seats": seats} if seats is not None else {}),
        },
        result=_SUBSCRIPTION_RESULT,
        work=lambda claim: _subscription_start(
            customer=customer,
            price=price,
            trial=trial,
            actor=actor,
            claim=claim,
            promotion_code=promotion_code,
            seats=seats,
        ),
    )


def _subscription_start(
    *,
    customer: Customer,
    price: Price,
    trial: bool,
    actor: User | None,
    claim: IdempotencyClaim,
    promotion_code: str = "",
    seats: int | None = None,
) -> Subscription:
    if not price.active or not price.plan.active:
        raise ValidationFailed("This price is no longer offered; choose another plan.")
    if seats is not None:
        seats_checked(seats)
    trial_days = price.plan.trial_days if trial else 0
    now = clock.now()
    with transaction.atomic(durable=True):
        locked = lock_customer(customer)
        if (
            Subscription.objects.filter(customer=locked)
            .exclude(status__in=sorted(SUBSCRIPTION_ENDED))
            .exists()
        ):
            raise SubscriptionExists()
        seats = seats_for_start(customer=locked, price=price, seats=seats)
        invoice = None
        if trial_days:
            if price.plan.trial_requires_card and payment_method_default(customer=locked) is None:
                raise PaymentMethodRequired("This plan's trial starts once a card is saved.")
            trial_end = now + dt.timedelta(days=trial_days)
            subscription = Subscription.objects.create(
                customer=locked,
                price=price,
                seats=seats,
                status=SubscriptionStatus.TRIALING,
                billing_anchor=trial_end,
                current_period_start=now,
                current_period_end=trial_end,
                trial_end=trial_end,
            )
            _promotion_redeem(promotion_code, locked, subscription, now)
        else:
            if price.amount > 0 and payment_method_default(customer=locked) is None:
                raise PaymentMethodRequired()
            period = periods.period_number(anchor=now, months=price_months(price), index=0)
            subscription = Subscription.objects.create(
                customer=locked,
                price=price,
                seats=seats,
                status=SubscriptionStatus.INCOMPLETE,
                billing_anchor=now,
                current_period_start=period.start,
                current_period_end=period.end,
            )
            _promotion_redeem(promotion_code, locked, subscription, now)
            invoice = invoice_draft_for_period_locked(
                subscription=subscription,
                period=period,
                billing_reason=Invoice.BillingReason.SUBSCRIPTION_CREATE,
            )
            invoice_finalize_locked(customer=locked, subscription=subscription, invoice=invoice)
        entitlements_changed(customer=locked)
        subscription_event_publish(subscription=subscription, event_type="subscription.created")
        claim.checkpoint(_SUBSCRIPTION_RESULT.dump(subscription))
        audit_record(
            action="billing.subscription_started",
            actor=actor,
            target=subscription,
            details={
                "customer": locked.public_id,
                "price": price.public_id,
                "status": subscription.status,
                "trial_days": trial_days,
                "seats": seats,
            },
        )
        if subscription.status == SubscriptionStatus.TRIALING:
            subscription_confirmation_send(subscription=subscription)
    if invoice is not None and invoice.status == InvoiceStatus.OPEN:
        invoice_charge(invoice=invoice, off_session=False, actor=actor)
        subscription.refresh_from_db()
    return subscription


def subscription_cancel(
    *,
    subscription: Subscription,
    at_period_end: bool,
    prorated_refund: bool = False,
    actor: User | None = None,
    idempotency_key: str,
    reason: str = "",
    comment: str = "",
) -> Subscription:
    """Cancel a subscription, at the end of its current period or now, and email the customer.

    At the period end: the customer keeps access until then and can resume before it; the billing
    clock ends the subscription at that moment without another invoice. Now: it ends at once and its
    open invoices are voided (nothing more is owed). A payment still in progress blocks cancelling
    now: its outcome may move money.

    With ``prorated_refund`` (now only), the unused time of what was paid for the current period is
    refunded (``unused_paid_time``: rounded by ``proration.py`` in the customer's favour, in the
    gateway's charge steps); it is never more than what was captured for this period and not
    refunded yet, and it comes from the period's latest payments first. The refunds go the way of
    ``refund_issue``: reserved on their payments under the row locks in the cancellation's
    transaction, sent to the gateway after commit, posted to the ledger and emailed on success.

    ``reason`` (a ``Subscription.CancellationReason``) and ``comment`` are the customer's answer to
    the cancellation survey, kept on the subscription.

    Done once per ``idempotency_key`` of the customer (see ``subscription_start``).
    """
    if reason and reason not in Subscription.CancellationReason.values:
        raise ValidationFailed("Choose one of the listed reasons.", details={"field": "reason"})
    if prorated_refund and at_period_end:
        raise ValidationFailed(
            "A prorated refund is given only when canceling now.",
            details={"field": "prorated_refund"},
        )
    return idempotent(
        scope=subscription.customer.public_id,
        key=idempotency_key,
        operation="subscription_cancel",
        parameters={
            "subscription": subscription.public_id,
            "at_period_end": at_period_end,
            "prorated_refund": prorated_refund,
            "reason": reason,
            "comment": comment,
        },
        result=_SUBSCRIPTION_RESULT,
        work=lambda claim: _subscription_cancel(
            subscription=subscription,
            at_period_end=at_period_end,
            prorated_refund=prorated_refund,
            actor=actor,
            claim=claim,
            reason=reason,
            comment=comment[:500],
        ),
    )


def _subscription_cancel(
    *,
    subscription: Subscription,
    at_period_end: bool,
    prorated_refund: bool,
    actor: User | None,
    claim: IdempotencyClaim,
    reason: str = "",
    comment: str = "",
) -> Subscription:
    now = clock.now()
    refunds: list[Refund] = []
    with transaction.atomic(durable=True):
        locks = lock_subscription(subscription)
        current = locks.subscription
        current.cancellation_reason, current.cancellation_comment = reason, comment
        if at_period_end:
            if current.status not in _CANCELABLE_AT_PERIOD_END:
                raise TransitionRefused(
                    f"A {current.status} subscription can only be canceled now.",
                    details={"object": "subscription", "from": current.status},
                )
            current.cancel_at_period_end = True
            current.canceled_at = now
            current.save(
                update_fields=[
                    "cancel_at_period_end",
                    "canceled_at",
                    "cancellation_reason",
                    "cancellation_comment",
                ]
            )
            subscription_event_publish(subscription=current, event_type="subscription.canceled")
        else:
            SUBSCRIPTION.check(current=current.status, target=SubscriptionStatus.CANCELED)
            invoices = lock_subscription_invoices(subscription=current, with_paid=prorated_refund)
            open_invoices = [
                invoice for invoice in invoices if invoice.status == InvoiceStatus.OPEN
            ]
            live = PaymentAttempt.objects.filter(
                invoice__in=open_invoices, status__in=sorted(PAYMENT_LIVE)
            ).first()
            if live is not None:
                raise PaymentInProgress(details={"payment": live.public_id, "status": live.status})
            if prorated_refund:
                refunds = unused_time_refunds_locked(
                    subscription=current,
                    paid=[invoice for invoice in invoices if invoice.status == InvoiceStatus.PAID],
                    now=now,
                    actor=actor,
                    charge_step=gateway_charge_step(current.price.currency),
                )
            for invoice in open_invoices:
                invoice_void_locked(customer=locks.customer, invoice=invoice)
            subscription_end_locked(
                subscription=current, status=SubscriptionStatus.CANCELED, at=now
            )
            current.canceled_at = now
            current.save(
                update_fields=["canceled_at", "cancellation_reason", "cancellation_comment"]
            )
        claim.checkpoint(_SUBSCRIPTION_RESULT.dump(current))
        refunded = sum(refund.amount for refund in refunds)
        audit_record(
            action="billing.subscription_canceled",
            actor=actor,
            target=current,
            details={
                "at_period_end": at_period_end,
                "status": current.status,
                "reason": reason,
                "refunded": refunded,
                "refunds": [refund.public_id for refund in refunds],
            },
        )
        subscription_canceled_notify(
            customer=locks.customer, subscription=current, refunded=refunded, now=now
        )
    for refund in refunds:
        refund_send(refund=refund, payment=refund.payment, actor=actor)
    return current


def _promotion_redeem(
    code: str, customer: Customer, subscription: Subscription, now: dt.datetime
) -> None:
    if code.strip():
        promotion_code_redeem_locked(
            code=code, customer=customer, subscription=subscription, now=now
        )


_CANCELABLE_AT_PERIOD_END = frozenset(
    {SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE}
)


def subscription_resume(*, subscription: Subscription, actor: User | None = None) -> Subscription:
    """Undo a cancellation scheduled for the period end, while that period has not ended."""
    with transaction.atomic(durable=True):
        current = lock_subscription(subscription).subscription
        if (
            not current.cancel_at_period_end
            or current.status in SUBSCRIPTION_ENDED
            or clock.now() >= current.current_period_end
        ):
            raise TransitionRefused(
                "Only a subscription set to cancel at the end of a period that has not ended yet "
                "can be resumed.",
                details={"object": "subscription", "from": current.status},
            )
        current.cancel_at_period_end = False
        current.canceled_at = None
        current.cancellation_reason = current.cancellation_comment = ""
        current.save(
            update_fields=[
                "cancel_at_period_end",
                "canceled_at",
                "cancellation_reason",
                "cancellation_comment",
            ]
        )
        subscription_event_publish(subscription=current, event_type="subscription.resumed")
        audit_record(action="billing.subscription_resumed", actor=actor, target=current)
    return current


def subscription_change_price(
    *,
    subscription: Subscription,
    price: Price,
    actor: User | None = None,
    idempotency_key: str,
) -> Subscription:
    """Move a subscription to another price.

    - An upgrade (a higher amount for the same billing interval) takes effect now: an invoice with a
      credit for the unused time on the old price and a charge for the remaining time on the new one,
      prorated to the second (``proration.upgrade``), is finalized and charged on session. If that
      payment fails the change stands and the invoice is retried like a renewal (dunning). During a
      trial the price simply changes: nothing was paid, so nothing is prorated.
    - A downgrade (the same or a lower amount) and any change of interval (monthly <-> yearly) are
      scheduled for the end of the current period, cancellable until then; a new interval starts its
      own schedule at that moment.

    Done once per ``idempotency_key`` of the customer (see ``subscription_start``): a repeated
    upgrade returns the subscription as the first request left it and charges nothing more.
    """
    return idempotent(
        scope=subscription.customer.public_id,
        key=idempotency_key,
        operation="subscription_change_price",
        parameters={"subscription": subscription.public_id, "price": price.public_id},
        result=_SUBSCRIPTION_RESULT,
        work=lambda claim: _subscription_change_price(
            subscription=subscription, price=price, actor=actor, claim=claim
        ),
    )


def _subscription_change_price(
    *, subscription: Subscription, price: Price, actor: User | None, claim: IdempotencyClaim
) -> Subscription:
    if not price.active or not price.plan.active:
        raise ValidationFailed("This price is no longer offered; choose another plan.")
    now = clock.now()
    with transaction.atomic(durable=True):
        locks = lock_subscription(subscription)
        current = locks.subscription
        old = current.price
        if price.pk == old.pk:
            raise ValidationFailed("The subscription is already on this price.")
        if price.currency != old.currency:
            raise ValidationFailed("A subscription keeps its currency; choose a price in it.")
        seats = seats_for_price(
            subscription=current, members=members_count(locks.customer), price=price
        )
        timing = previews.change_timing(subscription=current, price=price, seats=seats)
        subscription_period_open_check(subscription=current, now=now)
        if current.status not in SUBSCRIPTION_CHANGEABLE:
            raise TransitionRefused(
                f"A {current.status} subscription cannot change plans; pay or restart it first.",
                details={"object": "subscription", "from": current.status},
            )
        invoice = None
        if timing == previews.ChangeTiming.PERIOD_END:
            following = seats_following(
                subscription=current, members=members_count(locks.customer), price=price
            )
            current.scheduled_price = price
            current.scheduled_seats = following if following != current.seats else None
            current.save(update_fields=["scheduled_price", "scheduled_seats"])
            change = "scheduled"
        elif timing == previews.ChangeTiming.TRIAL:
            current.price, current.scheduled_price = price, None
            current.seats, current.scheduled_seats = seats, None
            current.save(update_fields=["price", "scheduled_price", "seats", "scheduled_seats"])
            entitlements_changed(customer=locks.customer)
            change = "now"
        else:
            invoice = upgrade_invoice_locked(locks=locks, price=price, now=now, seats=seats)
            entitlements_changed(customer=locks.customer)
            change = "now"
        subscription_event_publish(subscription=current, event_type="subscription.updated")
        claim.checkpoint(_SUBSCRIPTION_RESULT.dump(current))
        audit_record(
            action="billing.subscription_price_changed",
            actor=actor,
            target=current,
            details={
                "from": old.public_id,
                "to": price.public_id,
                "when": change,
                "seats": current.seats_next,
            },
        )
    if invoice is not None and invoice.status == InvoiceStatus.OPEN:
        invoice_charge(invoice=invoice, off_session=False, actor=actor)
        current.refresh_from_db()
    return current


def subscription_scheduled_change_cancel(
    *, subscription: Subscription, actor: User | None = None
) -> Subscription:
    """Drop a price change scheduled for the period end; the subscription keeps its price."""
    with transaction.atomic(durable=True):
        current = lock_subscription(subscription).subscription
        if current.scheduled_price is None:
            raise TransitionRefused(
                "No plan change is scheduled.", details={"object": "subscription"}
            )
        dropped = current.scheduled_price
        current.scheduled_price = None
        current.save(update_fields=["scheduled_price"])
        subscription_event_publish(subscription=current, event_type="subscription.updated")
        audit_record(
            action="billing.subscription_price_change_canceled",
            actor=actor,
            target=current,
            details={"dropped": dropped.public_id},
        )
    return current
