"""Billing writes: customers, cards, subscriptions, invoices, payments and refunds.

Every write runs in one durable transaction, takes its row locks through ``billing.locks`` (customer
-> subscription -> invoice -> payment -> refund), records an audit event in that transaction and
queues its emails in the outbox, delivered after commit.

Calls to the gateway never happen inside a transaction. A payment is recorded as pending and
committed before the gateway is asked, and its outcome is recorded in a second transaction; a crash
in between leaves the attempt pending, and ``payment_reconcile`` asks the gateway what happened to
its idempotency key before the invoice can be charged again. Refunds work the same way, with the
amount reserved on the payment before the gateway is asked.

Every service a request uses to move money or create billable state (``subscription_start``,
``subscription_change_price``, ``subscription_cancel``, ``invoice_pay``) takes an
``idempotency_key`` and runs through ``core.idempotency``: its claim is committed before the work
starts and checkpointed in the transaction of the work's first effect, so the same request again
returns the first result, even after a crash. ``refund_issue`` keeps its key on the refund itself.

Functions named ``*_locked`` (and ``payment_begin``) are steps, not services: they run inside the
caller's transaction on rows the caller has locked, and are shared with the billing clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from django.db import IntegrityError, transaction
from django.db.models import Max, Q, Sum

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing import periods, previews, proration
from tollgate.billing.conf import InvoiceNumbering, billing_settings
from tollgate.billing.emails import billing_links, subscription_confirmation_send
from tollgate.billing.entitlements import entitlements_changed
from tollgate.billing.errors import (
    InvoiceImmutable,
    InvoiceNotPayable,
    InvoiceTotalsMismatch,
    PaymentInProgress,
    PaymentMethodNotFound,
    PaymentMethodRequired,
    PaymentNotCaptured,
    RefundExceedsCaptured,
    SubscriptionExists,
    TransitionRefused,
)
from tollgate.billing.gateways.base import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    DeclineKind,
    GatewayError,
    GatewayRequestRefused,
    GatewayUnavailable,
    RefundRequest,
    RefundResult,
    SetupSession,
    SetupStatus,
)
from tollgate.billing.gateways.registry import gateway_get
from tollgate.billing.ledger import (
    invoice_closed_posting,
    invoice_finalized_posting,
    ledger_post,
    payment_captured_posting,
    refund_succeeded_posting,
    write_off_reversed_posting,
)
from tollgate.billing.locks import (
    InvoiceLocks,
    PaymentLocks,
    RefundLocks,
    SubscriptionLocks,
    lock_customer,
    lock_invoice,
    lock_payment,
    lock_refund,
    lock_subscription,
)
from tollgate.billing.models import (
    Customer,
    Invoice,
    InvoiceLine,
    InvoiceNumberSequence,
    LedgerAccount,
    LedgerTransaction,
    PaymentAttempt,
    PaymentMethod,
    Refund,
    Subscription,
)
from tollgate.billing.selectors import payment_method_default
from tollgate.billing.states import (
    INVOICE,
    PAYMENT,
    PAYMENT_LIVE,
    REFUND,
    SUBSCRIPTION,
    SUBSCRIPTION_ENDED,
    InvoiceStatus,
    PaymentStatus,
    RefundStatus,
    SubscriptionStatus,
)
from tollgate.catalog.models import Price
from tollgate.core import clock
from tollgate.core.errors import (
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    PermissionDenied,
    ValidationFailed,
)
from tollgate.core.events import event_publish
from tollgate.core.idempotency import IdempotencyClaim, PublicIdResult, idempotent
from tollgate.core.money import Money, validate_currency
from tollgate.notifications.services import email_send_template

log = structlog.get_logger(__name__)

# What a keyed request stores as its result: the object's public id, read back fresh on a replay.
_SUBSCRIPTION_RESULT = PublicIdResult(Subscription)
_PAYMENT_RESULT = PublicIdResult(PaymentAttempt)


# --- Customers and cards ------------------------------------------------------------------------------
def customer_get_or_create(*, user: User) -> Customer:
    """The billing customer of ``user``, created on first use. Safe under concurrent calls: the
    one-to-one constraint lets one insert win and the others read it."""
    existing = Customer.objects.filter(user=user).first()
    if existing is not None:
        return existing
    with transaction.atomic(durable=True):
        try:
            with transaction.atomic():
                customer = Customer.objects.create(user=user, email=user.email)
        except IntegrityError:
            return Customer.objects.get(user=user)
        audit_record(action="billing.customer_created", actor=user, target=customer)
    return customer


def payment_method_setup_start(*, customer: Customer, return_url: str) -> SetupSession:
    """Open a card-setup session on the gateway's hosted form (the card never touches our pages).

    Creates the customer's record at the gateway first when there is none for this gateway.
    """
    gateway = gateway_get()
    if customer.gateway != gateway.name or not customer.gateway_reference:
        reference = gateway.customer_create(customer_id=customer.public_id, email=customer.email)
        with transaction.atomic(durable=True):
            locked = lock_customer(customer)
            locked.gateway, locked.gateway_reference = gateway.name, reference
            locked.save(update_fields=["gateway", "gateway_reference"])
            audit_record(
                action="billing.gateway_customer_created",
                target=locked,
                details={"gateway": gateway.name},
            )
        customer.gateway, customer.gateway_reference = gateway.name, reference
    return gateway.setup_start(customer_reference=customer.gateway_reference, return_url=return_url)


def payment_method_attach(
    *, customer: Customer, setup_reference: str, actor: User | None = None
) -> PaymentMethod:
    """Save the card of a completed setup session as the customer's default card.

    Attaching the same session again returns the same card and charges nothing. A newly saved card
    is the signal that the customer wants to pay: every open invoice of the customer without a
    payment in progress is charged with it at once (on session: the customer is present).
    """
    gateway = gateway_get()
    result = gateway.setup_result(session_reference=setup_reference)
    if (
        result.status != SetupStatus.SUCCEEDED
        or result.card is None
        or not customer.gateway_reference
        or result.customer_reference != customer.gateway_reference
    ):
        raise PaymentMethodNotFound(details={"failure": result.failure_code or result.status})
    card = result.card
    with transaction.atomic(durable=True):
        locked = lock_customer(customer)
        method = PaymentMethod.objects.filter(
            gateway=gateway.name, gateway_token=card.token
        ).first()
        if method is None:
            PaymentMethod.objects.filter(customer=locked, is_default=True).update(is_default=False)
            method = PaymentMethod.objects.create(
                customer=locked,
                gateway=gateway.name,
                gateway_token=card.token,
                brand=card.brand,
                last4=card.last4,
                exp_month=card.exp_month,
                exp_year=card.exp_year,
                is_default=True,
            )
            audit_record(
                action="billing.payment_method_attached",
                actor=actor,
                target=method,
                details={"customer": locked.public_id, "brand": card.brand, "last4": card.last4},
            )
        else:
            return method
    for invoice in Invoice.objects.filter(customer=customer, status=InvoiceStatus.OPEN).exclude(
        payments__status__in=sorted(PAYMENT_LIVE)
    ):
        try:
            _invoice_charge(invoice=invoice, off_session=False, actor=actor)
        except (PaymentInProgress, InvoiceNotPayable):
            continue  # another request is collecting it, or it was just settled
    return method


def payment_method_detach(
    *, payment_method: PaymentMethod, actor: User | None = None
) -> PaymentMethod:
    """Remove a saved card: it is forgotten at the gateway and never charged again. Detaching the
    default card leaves the customer without one; the next due charge then fails for want of a
    card and dunning runs its course (a new card pays at once)."""
    with transaction.atomic(durable=True):
        lock_customer(payment_method.customer)
        method = PaymentMethod.objects.select_for_update().get(pk=payment_method.pk)
        if method.detached_at is not None:
            return method
        method.detached_at = clock.now()
        method.is_default = False
        method.save(update_fields=["detached_at", "is_default"])
        audit_record(
            action="billing.payment_method_detached",
            actor=actor,
            target=method,
            details={"brand": method.brand, "last4": method.last4},
        )
    gateway_get(method.gateway).payment_method_detach(token=method.gateway_token)
    return method


# --- Subscriptions --------------------------------------------------------------------------------------
def subscription_start(
    *,
    customer: Customer,
    price: Price,
    trial: bool = True,
    actor: User | None = None,
    idempotency_key: str,
) -> Subscription:
    """Start ``customer`` on ``price`` (the checkout); a customer has at most one subscription that
    has not ended.

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
        parameters={"price": price.public_id, "trial": trial},
        result=_SUBSCRIPTION_RESULT,
        work=lambda claim: _subscription_start(
            customer=customer, price=price, trial=trial, actor=actor, claim=claim
        ),
    )


def _subscription_start(
    *, customer: Customer, price: Price, trial: bool, actor: User | None, claim: IdempotencyClaim
) -> Subscription:
    if not price.active or not price.plan.active:
        raise ValidationFailed("This price is no longer offered; choose another plan.")
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
        invoice = None
        if trial_days:
            if price.plan.trial_requires_card and payment_method_default(customer=locked) is None:
                raise PaymentMethodRequired("This plan's trial starts once a card is saved.")
            trial_end = now + dt.timedelta(days=trial_days)
            subscription = Subscription.objects.create(
                customer=locked,
                price=price,
                status=SubscriptionStatus.TRIALING,
                billing_anchor=trial_end,
                current_period_start=now,
                current_period_end=trial_end,
                trial_end=trial_end,
            )
        else:
            if price.amount > 0 and payment_method_default(customer=locked) is None:
                raise PaymentMethodRequired()
            period = periods.period_number(anchor=now, months=price_months(price), index=0)
            subscription = Subscription.objects.create(
                customer=locked,
                price=price,
                status=SubscriptionStatus.INCOMPLETE,
                billing_anchor=now,
                current_period_start=period.start,
                current_period_end=period.end,
            )
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
            },
        )
        if subscription.status == SubscriptionStatus.TRIALING:
            subscription_confirmation_send(subscription=subscription)
    if invoice is not None and invoice.status == InvoiceStatus.OPEN:
        _invoice_charge(invoice=invoice, off_session=False, actor=actor)
        subscription.refresh_from_db()
    return subscription


def price_months(price: Price) -> int:
    """How many months one period of ``price`` lasts."""
    return periods.interval_months(interval=price.interval, interval_count=price.interval_count)


def subscription_event_publish(*, subscription: Subscription, event_type: str) -> None:
    """Publish ``event_type`` about ``subscription`` for the operator's product, in the current
    transaction; each call reports a change of its own."""
    event_publish(
        event_type=event_type,
        object_type="subscription",
        object_id=subscription.public_id,
        key=f"{subscription.public_id}:{secrets.token_hex(8)}",
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
    subscription.save(
        update_fields=["status", "ended_at", "cancel_at_period_end", "scheduled_price"]
    )
    entitlements_changed(customer=subscription.customer)
    subscription_event_publish(
        subscription=subscription,
        event_type="subscription.canceled"
        if status == SubscriptionStatus.CANCELED
        else "subscription.updated",
    )


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
    refunded (``_unused_paid_time``: rounded by ``proration.py`` in the customer's favour); it is
    never more than what was captured for this period and not refunded yet, and it comes from the
    period's latest payments first. The refunds go the way of
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
            invoices = _cancel_invoices_locked(subscription=current, with_paid=prorated_refund)
            open_invoices = [
                invoice for invoice in invoices if invoice.status == InvoiceStatus.OPEN
            ]
            live = PaymentAttempt.objects.filter(
                invoice__in=open_invoices, status__in=sorted(PAYMENT_LIVE)
            ).first()
            if live is not None:
                raise PaymentInProgress(details={"payment": live.public_id, "status": live.status})
            if prorated_refund:
                refunds = _unused_time_refunds_locked(
                    subscription=current,
                    paid=[invoice for invoice in invoices if invoice.status == InvoiceStatus.PAID],
                    now=now,
                    actor=actor,
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
        _cancellation_notify(
            customer=locks.customer, subscription=current, refunded=refunded, now=now
        )
    for refund in refunds:
        _refund_send(refund=refund, payment=refund.payment, actor=actor)
    return current


def _cancel_invoices_locked(*, subscription: Subscription, with_paid: bool) -> list[Invoice]:
    """Lock the subscription's open invoices and, ``with_paid``, the paid ones of its current
    period (in one statement, by primary key: the lock order)."""
    wanted = Q(status=InvoiceStatus.OPEN)
    if with_paid:
        wanted |= Q(
            status=InvoiceStatus.PAID,
            period_start__gte=subscription.current_period_start,
            period_end__lte=subscription.current_period_end,
        )
    return list(
        Invoice.objects.select_for_update().filter(wanted, subscription=subscription).order_by("pk")
    )


def _unused_time_refunds_locked(
    *, subscription: Subscription, paid: Sequence[Invoice], now: dt.datetime, actor: User | None
) -> list[Refund]:
    """Reserve the refunds of the current period's unused time (see ``subscription_cancel``)."""
    payments = list(
        PaymentAttempt.objects.select_for_update()
        .filter(invoice__in=[invoice.pk for invoice in paid], status=PaymentStatus.SUCCEEDED)
        .order_by("pk")
    )
    remaining = min(
        _unused_paid_time(invoices=paid, at=now),
        sum(payment.amount - payment.amount_refunded for payment in payments),
    )
    reason = Refund.Reason.REQUESTED_BY_CUSTOMER
    note = (
        f"Unused time of the period ending {subscription.current_period_end:%Y-%m-%d %H:%M:%S} UTC "
        f"from {now:%Y-%m-%d %H:%M:%S} UTC, refunded when {subscription.public_id} was canceled."
    )
    refunds = []
    for payment in reversed(payments):
        amount = min(remaining, payment.amount - payment.amount_refunded)
        if amount <= 0:
            continue
        refunds.append(
            _refund_reserve_locked(
                payment=payment,
                amount=amount,
                reason=reason,
                note=note,
                actor=actor,
                idempotency_key=f"{subscription.public_id}-cancel-{payment.public_id}",
                fingerprint=refund_fingerprint(
                    payment=payment, amount=amount, reason=reason, note=note
                ),
            )
        )
        remaining -= amount
    return refunds


def _unused_paid_time(*, invoices: Sequence[Invoice], at: dt.datetime) -> int:
    """What the time after ``at`` is worth on ``invoices`` (paid ones of one period), line by line,
    by the rule of ``proration.py``, in the customer's favour: a charge's unused part rounds up and
    a credit's remaining part rounds down. So after an upgrade it is the new price's unused time,
    and after an upgrade that was never paid (its invoice is not among these), the old price's."""
    by_pk = {invoice.pk: invoice for invoice in invoices}
    worth = 0
    for line in InvoiceLine.objects.filter(invoice__in=list(by_pk)):
        invoice = by_pk[line.invoice_id]
        start, end = (
            line.period_start or invoice.period_start,
            line.period_end or invoice.period_end,
        )
        if start is None or end is None:
            continue
        period = periods.Period(start=start, end=end)
        if line.amount >= 0:
            worth += proration.split(amount=line.amount, period=period, at=at).unused
        else:
            worth -= proration.remaining_charge(amount=-line.amount, period=period, at=at)
    return max(worth, 0)


def _cancellation_notify(
    *, customer: Customer, subscription: Subscription, refunded: int, now: dt.datetime
) -> None:
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
        timing = previews.change_timing(subscription=current, price=price)
        if now >= current.current_period_end:
            raise TransitionRefused(
                "The current period has ended and is being renewed; try again in a minute.",
                details={"object": "subscription", "from": current.status},
            )
        if current.status not in _CHANGEABLE:
            raise TransitionRefused(
                f"A {current.status} subscription cannot change plans; pay or restart it first.",
                details={"object": "subscription", "from": current.status},
            )
        invoice = None
        if timing == previews.ChangeTiming.PERIOD_END:
            current.scheduled_price = price
            current.save(update_fields=["scheduled_price"])
            change = "scheduled"
        elif timing == previews.ChangeTiming.TRIAL:
            current.price, current.scheduled_price = price, None
            current.save(update_fields=["price", "scheduled_price"])
            entitlements_changed(customer=locks.customer)
            change = "now"
        else:
            invoice = _upgrade_invoice(locks=locks, price=price, now=now)
            entitlements_changed(customer=locks.customer)
            change = "now"
        subscription_event_publish(subscription=current, event_type="subscription.updated")
        claim.checkpoint(_SUBSCRIPTION_RESULT.dump(current))
        audit_record(
            action="billing.subscription_price_changed",
            actor=actor,
            target=current,
            details={"from": old.public_id, "to": price.public_id, "when": change},
        )
    if invoice is not None and invoice.status == InvoiceStatus.OPEN:
        _invoice_charge(invoice=invoice, off_session=False, actor=actor)
        current.refresh_from_db()
    return current


_CHANGEABLE = frozenset(
    {SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE}
)


def _upgrade_invoice(*, locks: SubscriptionLocks, price: Price, now: dt.datetime) -> Invoice:
    subscription, old = locks.subscription, locks.subscription.price
    amounts = previews.upgrade_proration(subscription=subscription, price=price, at=now)
    prorated, remaining = amounts.proration, amounts.remaining
    subscription.price, subscription.scheduled_price = price, None
    subscription.save(update_fields=["price", "scheduled_price"])
    invoice = Invoice.objects.create(
        customer=locks.customer,
        subscription=subscription,
        billing_reason=Invoice.BillingReason.SUBSCRIPTION_UPDATE,
        currency=price.currency,
        period_start=remaining.start,
        period_end=remaining.end,
    )
    lines = [
        LineSpec(
            kind=InvoiceLine.Kind.PRORATION_CREDIT,
            description=f"Unused time on {old.plan.name}",
            amount=-prorated.credit,
            price=old,
            period=remaining,
        ),
        LineSpec(
            kind=InvoiceLine.Kind.PRORATION_DEBIT,
            description=f"Remaining time on {price.plan.name}",
            amount=prorated.debit,
            price=price,
            period=remaining,
        ),
    ]
    invoice_lines_add_locked(invoice=invoice, lines=[line for line in lines if line.amount])
    invoice_finalize_locked(customer=locks.customer, subscription=subscription, invoice=invoice)
    return invoice


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


# --- Invoices ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LineSpec:
    kind: InvoiceLine.Kind
    description: str
    amount: int
    price: Price | None = None
    period: periods.Period | None = None


def invoice_draft_for_period_locked(
    *, subscription: Subscription, period: periods.Period, billing_reason: Invoice.BillingReason
) -> Invoice:
    """A draft invoice of the subscription's current price for ``period``."""
    price = subscription.price
    invoice = Invoice.objects.create(
        customer_id=subscription.customer_id,
        subscription=subscription,
        billing_reason=billing_reason,
        currency=price.currency,
        period_start=period.start,
        period_end=period.end,
    )
    invoice_lines_add_locked(invoice=invoice, lines=[plan_charge_line(price=price, period=period)])
    return invoice


def plan_charge_line(*, price: Price, period: periods.Period) -> LineSpec:
    """The line that charges ``price`` for ``period``."""
    return LineSpec(
        kind=InvoiceLine.Kind.PLAN_CHARGE,
        description=f"{price.plan.name} ({period.start:%Y-%m-%d} to {period.end:%Y-%m-%d})",
        amount=price.amount,
        price=price,
        period=period,
    )


def invoice_lines_add_locked(*, invoice: Invoice, lines: Sequence[LineSpec]) -> None:
    """Add lines to a draft and keep its total equal to the sum of its lines."""
    if invoice.status != InvoiceStatus.DRAFT:
        raise InvoiceImmutable(details={"invoice": invoice.public_id})
    InvoiceLine.objects.bulk_create(invoice_line_rows(invoice=invoice, lines=lines))
    invoice.total += sum(line.amount for line in lines)
    invoice.save(update_fields=["total"])


def invoice_line_rows(*, invoice: Invoice, lines: Sequence[LineSpec]) -> list[InvoiceLine]:
    """The rows of ``lines`` on ``invoice``, not saved yet."""
    return [
        InvoiceLine(
            invoice=invoice,
            kind=line.kind,
            description=line.description,
            amount=line.amount,
            price=line.price,
            period_start=line.period.start if line.period else None,
            period_end=line.period.end if line.period else None,
        )
        for line in lines
    ]


_LINE_SIGNS = {
    InvoiceLine.Kind.PLAN_CHARGE: 1,
    InvoiceLine.Kind.PRORATION_DEBIT: 1,
    InvoiceLine.Kind.PRORATION_CREDIT: -1,
    InvoiceLine.Kind.DISCOUNT: -1,
}


def invoice_draft_create(
    *, customer: Customer, currency: str, lines: Sequence[LineSpec], actor: User | None = None
) -> Invoice:
    """A one-off draft invoice for ``customer`` with ``lines``; its total is their sum.

    Charges and debits are positive, credits and discounts negative, and the total cannot be
    negative. It is billed once ``invoice_finalize`` numbers it.
    """
    try:
        code = validate_currency(currency)
    except ValueError as exc:
        raise ValidationFailed(str(exc), details={"field": "currency"}) from exc
    for index, line in enumerate(lines):
        if line.amount * _LINE_SIGNS[line.kind] < 0:
            raise ValidationFailed(
                f"A {line.kind.label.lower()} line cannot be {line.amount}.",
                details={"field": f"lines[{index}].amount"},
            )
        if line.price is not None and line.price.currency != code:
            raise ValidationFailed(
                "Every line must be in the invoice's currency.",
                details={"field": f"lines[{index}].price"},
            )
    if not lines or sum(line.amount for line in lines) < 0:
        raise ValidationFailed("An invoice needs lines and cannot total less than zero.")
    with transaction.atomic(durable=True):
        locked = lock_customer(customer)
        invoice = Invoice.objects.create(
            customer=locked, billing_reason=Invoice.BillingReason.MANUAL, currency=code
        )
        invoice_lines_add_locked(invoice=invoice, lines=lines)
        audit_record(
            action="billing.invoice_drafted",
            actor=actor,
            target=invoice,
            details={"customer": locked.public_id, "total": invoice.total},
        )
    return invoice


def invoice_create_for_period(
    *,
    subscription: Subscription,
    period: periods.Period,
    billing_reason: Invoice.BillingReason = Invoice.BillingReason.SUBSCRIPTION_CYCLE,
    actor: User | None = None,
) -> Invoice:
    """Create and finalize the invoice of ``subscription`` for ``period`` at its current price.

    Idempotent per period: when the invoice for that period already exists (another worker made it)
    it is returned unchanged, so the billing clock can never bill a period twice.
    """
    with transaction.atomic(durable=True):
        locks = lock_subscription(subscription)
        existing = (
            Invoice.objects.filter(
                subscription=locks.subscription,
                period_start=period.start,
                billing_reason=billing_reason,
            )
            .exclude(status=InvoiceStatus.VOID)
            .first()
        )
        if existing is not None:
            return existing
        invoice = invoice_draft_for_period_locked(
            subscription=locks.subscription, period=period, billing_reason=billing_reason
        )
        invoice_finalize_locked(
            customer=locks.customer, subscription=locks.subscription, invoice=invoice
        )
        audit_record(
            action="billing.invoice_created",
            actor=actor,
            target=invoice,
            details={"subscription": locks.subscription.public_id, "total": invoice.total},
        )
    return invoice


def invoice_finalize(*, invoice: Invoice, actor: User | None = None) -> Invoice:
    """Finalize a draft: check its total against its lines, give it the next number (gapless, taken
    under the customer's row lock), open it and post it to the ledger. From here it is immutable.
    An invoice of zero is paid at once."""
    with transaction.atomic(durable=True):
        locks = lock_invoice(invoice)
        invoice_finalize_locked(
            customer=locks.customer, subscription=locks.subscription, invoice=locks.invoice
        )
        audit_record(
            action="billing.invoice_finalized",
            actor=actor,
            target=locks.invoice,
            details={"number": locks.invoice.number, "total": locks.invoice.total},
        )
    return locks.invoice


def invoice_finalize_locked(
    *, customer: Customer, subscription: Subscription | None, invoice: Invoice
) -> None:
    """See ``invoice_finalize``; the caller holds the customer's lock, which guards the number."""
    INVOICE.check(current=invoice.status, target=InvoiceStatus.OPEN)
    line_sum = invoice.lines.aggregate(total=Sum("amount"))["total"] or 0
    if line_sum != invoice.total:
        raise InvoiceTotalsMismatch(
            details={"invoice": invoice.public_id, "total": invoice.total, "lines": line_sum}
        )
    now = clock.now()
    invoice.number = _invoice_number_take(customer)
    invoice.status = InvoiceStatus.OPEN
    invoice.finalized_at = now
    invoice.save(update_fields=["number", "status", "finalized_at"])
    if invoice.total == 0:
        invoice_mark_paid_locked(invoice=invoice, subscription=subscription, now=now)
        return
    ledger_post(**invoice_finalized_posting(customer=customer, invoice=invoice, at=now))


def _invoice_number_take(customer: Customer) -> str:
    """The next invoice number; the caller holds the customer's row lock (and so the sequence)."""
    conf = billing_settings()
    if conf.invoice_numbering == InvoiceNumbering.ACCOUNT:
        InvoiceNumberSequence.objects.get_or_create(name="account")
        sequence = InvoiceNumberSequence.objects.select_for_update().get(name="account")
        value = sequence.next_value
        sequence.next_value = value + 1
        sequence.save(update_fields=["next_value"])
        return f"{conf.invoice_number_prefix}-{value:06d}"
    number = customer_invoice_number_take(customer)
    customer.save(update_fields=["next_invoice_sequence"])
    return number


def customer_invoice_number_take(customer: Customer) -> str:
    """The customer's next invoice number (per-customer numbering), taken on the locked row in
    memory: the caller saves ``next_invoice_sequence``."""
    value = customer.next_invoice_sequence
    customer.next_invoice_sequence = value + 1
    return f"{customer.invoice_prefix}-{value:04d}"


def invoice_mark_paid_locked(
    *, invoice: Invoice, subscription: Subscription | None, now: dt.datetime
) -> None:
    """Settle the invoice in full; a subscription waiting on payment becomes active (and is
    confirmed to the customer when this payment is what starts it)."""
    invoice_paid_apply(invoice=invoice, now=now)
    invoice.save(update_fields=INVOICE_PAID_FIELDS)
    invoice_paid_publish(invoice=invoice)
    if subscription is not None and subscription.status in (
        SubscriptionStatus.INCOMPLETE,
        SubscriptionStatus.PAST_DUE,
        SubscriptionStatus.UNPAID,
    ):
        starts = subscription.status == SubscriptionStatus.INCOMPLETE
        subscription_move_locked(subscription=subscription, target=SubscriptionStatus.ACTIVE)
        if starts:
            subscription_confirmation_send(subscription=subscription)


INVOICE_PAID_FIELDS = ["status", "amount_paid", "paid_at", "next_payment_attempt_at"]


def invoice_paid_publish(*, invoice: Invoice) -> None:
    """Publish ``invoice.paid`` in the current transaction (an invoice is paid once)."""
    event_publish(
        event_type="invoice.paid",
        object_type="invoice",
        object_id=invoice.public_id,
        key=invoice.public_id,
    )


def invoice_paid_apply(*, invoice: Invoice, now: dt.datetime) -> None:
    """Mark the invoice paid in full, in memory (the caller saves ``INVOICE_PAID_FIELDS``)."""
    invoice.status = INVOICE.check(current=invoice.status, target=InvoiceStatus.PAID)
    invoice.amount_paid = invoice.total
    invoice.paid_at = now
    invoice.next_payment_attempt_at = None


def _invoice_close_locked(
    *,
    customer: Customer,
    invoice: Invoice,
    target: InvoiceStatus,
    kind: LedgerTransaction.Kind,
    debit: LedgerAccount,
) -> None:
    """Stop collecting an open (or written-off) invoice: what it was owed leaves receivables (or
    bad debt, where a write-off moved it) for ``debit``."""
    posting = invoice_closed_posting(
        customer=customer, invoice=invoice, kind=kind, debit=debit, at=clock.now()
    )
    invoice.status = INVOICE.check(current=invoice.status, target=target)
    invoice.next_payment_attempt_at = None
    invoice.save(update_fields=["status", "next_payment_attempt_at"])
    ledger_post(**posting)


def invoice_void_locked(*, customer: Customer, invoice: Invoice) -> None:
    """Cancel an open or written-off invoice that is no longer owed; its posting to the ledger is
    reversed (from bad debt for a written-off one)."""
    _invoice_close_locked(
        customer=customer,
        invoice=invoice,
        target=InvoiceStatus.VOID,
        kind=LedgerTransaction.Kind.INVOICE_VOIDED,
        debit=LedgerAccount.REVENUE,
    )


def invoice_write_off_locked(*, customer: Customer, invoice: Invoice) -> None:
    """Give up collecting an open invoice; what it was owed moves to bad debt."""
    _invoice_close_locked(
        customer=customer,
        invoice=invoice,
        target=InvoiceStatus.UNCOLLECTIBLE,
        kind=LedgerTransaction.Kind.INVOICE_WRITTEN_OFF,
        debit=LedgerAccount.BAD_DEBT,
    )


# --- Payments ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PendingCharge:
    """A payment attempt recorded as pending and committed, and the request to send for it."""

    payment: PaymentAttempt
    request: ChargeRequest


def invoice_pay(
    *, invoice: Invoice, off_session: bool, actor: User | None = None, idempotency_key: str
) -> PaymentAttempt:
    """Charge an open invoice to the customer's default card now, on request (a customer paying
    after a decline, or paying an invoice that was written off: it is then paid after all).

    Done once per ``idempotency_key`` of the customer: the same request again returns the first
    attempt (as it is now), a different request with the key is refused (422), a duplicate while
    the first is running gets a conflict (409). See ``_invoice_charge`` for the charge itself.
    """
    return idempotent(
        scope=invoice.customer.public_id,
        key=idempotency_key,
        operation="invoice_pay",
        parameters={"invoice": invoice.public_id, "off_session": off_session},
        result=_PAYMENT_RESULT,
        work=lambda claim: _invoice_charge(
            invoice=invoice, off_session=off_session, actor=actor, claim=claim
        ),
    )


def _invoice_charge(
    *,
    invoice: Invoice,
    off_session: bool,
    actor: User | None,
    claim: IdempotencyClaim | None = None,
) -> PaymentAttempt:
    """Charge a payable invoice to the customer's default card, at most once (a step of the keyed
    services, and of attaching a new card, which pays what is open).

    First the attempt is recorded as pending and committed, with the gateway idempotency key
    ``<invoice>-attempt-<n>`` (and, for a keyed request, as the request's checkpoint); no second
    attempt can start while one is live (pending, requires action, unknown or succeeded: a partial
    unique index guards it). Then the gateway is asked, outside any transaction: a timeout leaves
    the outcome ``unknown``. Then the outcome is recorded: a success pays the invoice, posts the
    capture to the ledger, reactivates the subscription and emails a receipt; a decline moves the
    dunning schedule on and tells the customer what happens next; a request for authentication
    emails the customer the link.
    """
    gateway = gateway_get()
    with transaction.atomic(durable=True):
        charge = payment_begin(
            locks=lock_invoice(invoice),
            gateway_name=gateway.name,
            off_session=off_session,
            actor=actor,
        )
        if claim is not None:
            claim.checkpoint(_PAYMENT_RESULT.dump(charge.payment))
    return payment_send(charge=charge, actor=actor)


def payment_begin(
    *, locks: InvoiceLocks, gateway_name: str, off_session: bool, actor: User | None
) -> PendingCharge:
    """Record a pending attempt for the locked payable invoice, in the caller's transaction.

    Payable: open, or uncollectible (written off, and paid after all, as Stripe allows). The attempt
    is the claim on the invoice: it clears the scheduled attempt time, and while it is live no other
    attempt can start.
    """
    invoice = locks.invoice
    if invoice.status not in _PAYABLE:
        raise InvoiceNotPayable(details={"invoice": invoice.public_id, "status": invoice.status})
    live = invoice.payments.filter(status__in=sorted(PAYMENT_LIVE)).first()
    if live is not None:
        raise PaymentInProgress(details={"payment": live.public_id, "status": live.status})
    method = payment_method_default(customer=locks.customer)
    if method is None or method.gateway != gateway_name:
        raise PaymentMethodRequired("Add a card to pay this invoice.")
    number = (invoice.payments.aggregate(last=Max("attempt_number"))["last"] or 0) + 1
    payment = payment_attempt_build(
        invoice=invoice,
        number=number,
        method=method,
        gateway_name=gateway_name,
        off_session=off_session,
    )
    payment.save(force_insert=True)
    if invoice.next_payment_attempt_at is not None:
        invoice.next_payment_attempt_at = None
        invoice.save(update_fields=["next_payment_attempt_at"])
    audit_record(
        action="billing.payment_started",
        actor=actor,
        target=payment,
        details={"invoice": invoice.public_id, "attempt": number, "amount": payment.amount},
    )
    return PendingCharge(
        payment=payment, request=charge_request_for(payment=payment, invoice=invoice, method=method)
    )


_PAYABLE = frozenset({InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE})


def payment_attempt_build(
    *,
    invoice: Invoice,
    number: int,
    method: PaymentMethod | None,
    gateway_name: str,
    off_session: bool,
) -> PaymentAttempt:
    """Attempt ``number`` at paying ``invoice`` in full, pending, not saved yet; its gateway
    idempotency key is derived from (invoice, attempt number)."""
    return PaymentAttempt(
        invoice=invoice,
        attempt_number=number,
        idempotency_key=f"{invoice.public_id}-attempt-{number}",
        amount=invoice.total,
        currency=invoice.currency,
        payment_method=method,
        gateway=gateway_name,
        off_session=off_session,
    )


def charge_request_for(
    *, payment: PaymentAttempt, invoice: Invoice, method: PaymentMethod
) -> ChargeRequest:
    """The one request an attempt ever sends: rebuilt identically when it is sent again."""
    return ChargeRequest(
        customer_reference=invoice.customer.gateway_reference,
        payment_method_token=method.gateway_token,
        amount=payment.amount,
        currency=payment.currency,
        idempotency_key=payment.idempotency_key,
        off_session=payment.off_session,
        description=f"Invoice {invoice.number}",
    )


def payment_send(*, charge: PendingCharge, actor: User | None) -> PaymentAttempt:
    """Send a committed pending charge to its gateway (outside any transaction) and record the
    outcome; a timeout or lost connection records ``unknown``."""
    result = payment_charge_request_send(charge)
    return payment_outcome_record(payment=charge.payment, result=result, actor=actor)


def payment_charge_request_send(charge: PendingCharge) -> ChargeResult | None:
    """Send a committed pending charge to its gateway (outside any transaction); None when the
    outcome cannot be known (timeout, lost connection). Records nothing."""
    gateway = gateway_get(charge.payment.gateway)
    try:
        return gateway.charge(request=charge.request)
    except (GatewayUnavailable, GatewayRequestRefused) as error:
        return _charge_error_outcome(charge, error)


def payment_charge_requests_send(charges: Sequence[PendingCharge]) -> list[ChargeResult | None]:
    """``payment_charge_request_send`` for a batch of charges on the configured gateway, sent as
    one batch (``Gateway.charge_many``); results in the same order."""
    if not charges:
        return []
    gateway = gateway_get()
    if any(charge.payment.gateway != gateway.name for charge in charges):
        return [payment_charge_request_send(charge) for charge in charges]
    answers = gateway.charge_many(requests=[charge.request for charge in charges])
    return [
        answer if isinstance(answer, ChargeResult) else _charge_error_outcome(charge, answer)
        for charge, answer in zip(charges, answers, strict=True)
    ]


def _charge_error_outcome(charge: PendingCharge, error: GatewayError) -> ChargeResult | None:
    """What a charge that met ``error`` comes to: unknown (None) when the gateway may or may not
    have processed it; failed when it refused the request."""
    if not isinstance(error, GatewayRequestRefused):
        log.warning("billing.payment_outcome_unknown", payment=charge.payment.public_id)
        return None
    # Not processed, and the same request would be refused again: the attempt fails (soft) and
    # dunning retries with a new attempt and key. A refusal is a fault to look into.
    log.error(
        "billing.payment_refused_by_gateway",
        payment=charge.payment.public_id,
        reason=str(error),
    )
    return ChargeResult(
        status=ChargeStatus.FAILED,
        decline_code=GATEWAY_REFUSED,
        decline_kind=DeclineKind.SOFT,
    )


GATEWAY_REFUSED = "gateway_refused"


def payment_reconcile(*, payment: PaymentAttempt, actor: User | None = None) -> PaymentAttempt:
    """Ask the gateway what happened to a payment that is pending, unknown or awaiting
    authentication, by its idempotency key, and record the answer.

    When the gateway never received the request (the worker died before it left, or it was lost on
    the way), the same request is sent now under the same key. A gateway processes a key at most
    once, so this cannot charge twice, even if the first request is still on its way.
    """
    if payment.status not in (
        PaymentStatus.PENDING,
        PaymentStatus.UNKNOWN,
        PaymentStatus.REQUIRES_ACTION,
    ):
        return payment
    gateway = gateway_get(payment.gateway)
    try:
        result = gateway.charge_lookup(idempotency_key=payment.idempotency_key)
    except GatewayUnavailable:
        return payment
    if result is not None:
        return payment_outcome_record(payment=payment, result=result, actor=actor)
    invoice = Invoice.objects.select_related("customer").get(pk=payment.invoice_id)
    method = payment.payment_method
    if method is None:  # an attempt made without a card failed at once; it is never pending
        return payment
    request = charge_request_for(payment=payment, invoice=invoice, method=method)
    return payment_send(charge=PendingCharge(payment=payment, request=request), actor=actor)


ACTION_EXPIRED = "authentication_expired"


def payment_action_expire(*, payment: PaymentAttempt, actor: User | None = None) -> PaymentAttempt:
    """Close an attempt that has waited too long for the customer to authenticate it (3-D Secure;
    ``BILLING_PAYMENT_ACTION_EXPIRY_HOURS``, for the billing clock to apply).

    The charge is first canceled at the gateway, by the attempt's idempotency key, so that an old
    authentication link can no longer approve it; the gateway answers with the charge's state, and
    an outcome it reached first (the customer authenticated at the last moment) is recorded as it
    is. Otherwise the attempt fails with ``authentication_expired``, a soft decline, and dunning
    goes on as after any decline: a renewal is retried on schedule, a first invoice is left to
    expire with its subscription. The customer is told, like after any failed payment. When the
    gateway cannot be reached nothing changes (the next run tries again).
    """
    if payment.status != PaymentStatus.REQUIRES_ACTION:
        return payment
    try:
        known: ChargeResult | None = gateway_get(payment.gateway).charge_cancel(
            idempotency_key=payment.idempotency_key
        )
    except GatewayUnavailable:
        return payment
    except GatewayRequestRefused:
        known = None  # the gateway has no such charge: nothing can approve it
    if known is not None and known.status == ChargeStatus.SUCCEEDED:
        return payment_outcome_record(payment=payment, result=known, actor=actor)
    expired = ChargeResult(
        status=ChargeStatus.FAILED,
        reference=payment.gateway_reference,
        decline_code=ACTION_EXPIRED,
        decline_kind=DeclineKind.SOFT,
    )
    return payment_outcome_record(
        payment=payment, result=expired, actor=actor, only_from=PaymentStatus.REQUIRES_ACTION
    )


def payment_fail_without_card(*, locks: InvoiceLocks, gateway_name: str) -> PaymentAttempt:
    """Record, in the caller's transaction, that a due charge could not be made for want of a card:
    a failed attempt (soft, ``no_payment_method``) that moves the dunning schedule on."""
    invoice = locks.invoice
    number = (invoice.payments.aggregate(last=Max("attempt_number"))["last"] or 0) + 1
    payment = payment_attempt_build(
        invoice=invoice, number=number, method=None, gateway_name=gateway_name, off_session=True
    )
    payment.save(force_insert=True)
    invoice.next_payment_attempt_at = None  # dunning sets the next one, if any
    invoice.save(update_fields=["next_payment_attempt_at"])
    payment.status = PAYMENT.check(current=payment.status, target=PaymentStatus.FAILED)
    payment.decline_code = "no_payment_method"
    payment.decline_kind = PaymentAttempt.DeclineKind.SOFT
    payment.completed_at = clock.now()
    payment.save(update_fields=["status", "decline_code", "decline_kind", "completed_at"])
    rows = PaymentLocks(
        customer=locks.customer, subscription=locks.subscription, invoice=invoice, payment=payment
    )
    _payment_failed(rows)
    audit_record(
        action="billing.payment_failed",
        target=payment,
        details={
            "invoice": invoice.public_id,
            "amount": payment.amount,
            "decline": "no_payment_method",
        },
    )
    payment_notify(rows)
    return payment


_PAYMENT_SETTLED = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.FAILED})


def payment_outcome_record(
    *,
    payment: PaymentAttempt,
    result: ChargeResult | None,
    actor: User | None,
    only_from: PaymentStatus | None = None,
) -> PaymentAttempt:
    """Record a gateway outcome (None: unknown). With ``only_from``, only if the payment is still in
    that status under its lock (a decision of ours that news from the gateway may have overtaken)."""
    target = PaymentStatus.UNKNOWN if result is None else PaymentStatus(result.status.value)
    with transaction.atomic(durable=True):
        locks = lock_payment(payment)
        current = locks.payment
        if (
            current.status == target
            or (current.status in _PAYMENT_SETTLED and target not in _PAYMENT_SETTLED)
            or (only_from is not None and current.status != only_from)
        ):
            # Already known, or news of an earlier stage arriving after the final outcome.
            return current
        current.status = PAYMENT.check(current=current.status, target=target)
        # Paying an invoice written off earlier (not one that this outcome is about to write off).
        written_off = locks.invoice.status == InvoiceStatus.UNCOLLECTIBLE
        if result is not None:
            current.gateway_reference = result.reference or current.gateway_reference
            current.decline_code = result.decline_code
            current.decline_kind = result.decline_kind.value if result.decline_kind else ""
            current.action_url = result.action_url
        if target in _PAYMENT_SETTLED:
            current.completed_at = clock.now()
        current.save()
        if target == PaymentStatus.SUCCEEDED:
            _payment_captured(locks)
        elif target == PaymentStatus.FAILED:
            _payment_failed(locks)
        elif target == PaymentStatus.REQUIRES_ACTION:
            _payment_needs_action(locks)
        audit_record(**payment_outcome_audit(locks=locks, actor=actor))
        payment_notify(locks, written_off=written_off)
    return current


def payment_outcome_audit(*, locks: PaymentLocks, actor: User | None) -> dict[str, Any]:
    """The audit event of a payment's recorded outcome (the arguments of ``audit_record``)."""
    payment = locks.payment
    return {
        "action": f"billing.payment_{payment.status}",
        "actor": actor,
        "target": payment,
        "details": {
            "invoice": locks.invoice.public_id,
            "amount": payment.amount,
            "decline": payment.decline_code,
            "decline_kind": payment.decline_kind,
        },
    }


def _payment_captured(locks: PaymentLocks) -> None:
    invoice = locks.invoice
    if invoice.status == InvoiceStatus.UNCOLLECTIBLE:
        _write_off_reverse_locked(customer=locks.customer, invoice=invoice)
    invoice_mark_paid_locked(invoice=invoice, subscription=locks.subscription, now=clock.now())
    ledger_post(**payment_captured_posting(locks=locks, at=clock.now()))


def _write_off_reverse_locked(*, customer: Customer, invoice: Invoice) -> None:
    """A written-off invoice is being paid after all: what it owes moves back from bad debt to
    receivable (reversing the write-off), so the capture then settles it like any other. A
    subscription that ended with it stays ended."""
    ledger_post(**write_off_reversed_posting(customer=customer, invoice=invoice, at=clock.now()))
    audit_record(
        action="billing.invoice_write_off_reversed",
        target=invoice,
        details={"number": invoice.number, "total": invoice.total},
    )


_DUNNED = frozenset(
    {Invoice.BillingReason.SUBSCRIPTION_CYCLE, Invoice.BillingReason.SUBSCRIPTION_UPDATE}
)


def _payment_failed(locks: PaymentLocks) -> None:
    """Dunning: a failed renewal payment makes the subscription past due and schedules the next
    retry, counted from the first failure (``BILLING_DUNNING_RETRY_DAYS``); so does a failed
    payment for a mid-period upgrade. When the retries are
    exhausted, or at once on a hard decline, the subscription becomes canceled (and the invoice is
    written off) or unpaid (and the invoice stays open), as ``BILLING_DUNNING_FINAL_STATUS`` says.
    First invoices (incomplete subscriptions) and one-off invoices are not retried."""
    subscription, invoice = locks.subscription, locks.invoice
    event_publish(
        event_type="invoice.payment_failed",
        object_type="invoice",
        object_id=invoice.public_id,
        key=locks.payment.public_id,
    )
    if (
        subscription is None
        or invoice.billing_reason not in _DUNNED
        or subscription.status not in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
    ):
        return
    conf = billing_settings()
    if subscription.status == SubscriptionStatus.ACTIVE:
        subscription_move_locked(subscription=subscription, target=SubscriptionStatus.PAST_DUE)
    failures = invoice.payments.filter(status=PaymentStatus.FAILED).order_by("completed_at", "pk")
    retries_done = failures.count() - 1
    hard = locks.payment.decline_kind == PaymentAttempt.DeclineKind.HARD
    if not hard and retries_done < len(conf.dunning_retries):
        first_failure = failures.values_list("completed_at", flat=True)[0] or clock.now()
        invoice.next_payment_attempt_at = first_failure + conf.dunning_retries[retries_done]
        invoice.save(update_fields=["next_payment_attempt_at"])
        return
    if conf.dunning_final_status == SubscriptionStatus.CANCELED:
        subscription_end_locked(
            subscription=subscription, status=SubscriptionStatus.CANCELED, at=clock.now()
        )
        invoice_write_off_locked(customer=locks.customer, invoice=invoice)
    else:
        subscription_move_locked(subscription=subscription, target=SubscriptionStatus.UNPAID)
    audit_record(
        action="billing.dunning_ended",
        target=subscription,
        details={"invoice": invoice.public_id, "status": subscription.status, "hard_decline": hard},
    )


def _payment_needs_action(locks: PaymentLocks) -> None:
    """A renewal the bank wants the customer to authenticate leaves the subscription past due until
    they do (the email carries the link); it is not retried meanwhile."""
    subscription = locks.subscription
    if (
        subscription is not None
        and locks.invoice.billing_reason in _DUNNED
        and subscription.status == SubscriptionStatus.ACTIVE
    ):
        subscription_move_locked(subscription=subscription, target=SubscriptionStatus.PAST_DUE)


_PAYMENT_EMAILS = {
    PaymentStatus.SUCCEEDED: "billing_receipt",
    PaymentStatus.FAILED: "billing_payment_failed",
    PaymentStatus.REQUIRES_ACTION: "billing_payment_action_required",
}


def payment_notify(locks: PaymentLocks, *, written_off: bool = False) -> None:
    """Email the customer the outcome. A failed payment of a written-off invoice says only that it
    can still be paid (its subscription's end was told when it ended)."""
    payment, invoice, subscription = locks.payment, locks.invoice, locks.subscription
    template = _PAYMENT_EMAILS.get(PaymentStatus(payment.status))
    if template is None:
        return
    method = payment.payment_method
    retry_at = invoice.next_payment_attempt_at
    email_send_template(
        to=locks.customer.email,
        template=template,
        context={
            **billing_links(invoice=invoice),
            "invoice_number": invoice.number,
            "amount": Money(payment.amount, payment.currency).format(),
            "card": str(method) if method else "",
            "action_url": payment.action_url,
            "hard_decline": payment.decline_kind == PaymentAttempt.DeclineKind.HARD,
            "action_expired": payment.decline_code == ACTION_EXPIRED,
            "retry_on": f"{retry_at:%B %-d, %Y}" if retry_at else "",
            "subscription_status": subscription.status if subscription and not written_off else "",
        },
        dedupe_key=f"{template}:{payment.public_id}",
    )


# --- Refunds -------------------------------------------------------------------------------------------
def refund_issue(
    *,
    payment: PaymentAttempt,
    amount: int,
    reason: Refund.Reason,
    note: str,
    actor: User,
    idempotency_key: str,
) -> Refund:
    """Refund ``amount`` of a captured payment: by staff, with a reason, at most once per key.

    The sum of refunds never exceeds the captured amount, even under concurrent requests: the
    amount is reserved on the payment under its row lock (and a check constraint) before the gateway
    is asked, and released if the gateway refuses. The same key with the same request returns the
    first refund; with a different request it is refused (422); while the first is still with the
    gateway it is a conflict (409). A success is posted to the ledger and emailed to the customer.
    """
    if not actor.is_staff:
        raise PermissionDenied("Only staff can issue refunds.")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValidationFailed(
            "Refund a positive whole number of minor units.", details={"field": "amount"}
        )
    if reason not in Refund.Reason.values:
        raise ValidationFailed("Choose a refund reason.", details={"field": "reason"})
    if not note.strip():
        raise ValidationFailed("Say why the refund is given.", details={"field": "note"})
    fingerprint = refund_fingerprint(payment=payment, amount=amount, reason=reason, note=note)
    with transaction.atomic(durable=True):
        locks = lock_payment(payment)
        existing = Refund.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.request_fingerprint != fingerprint:
                raise IdempotencyKeyReused()
            if existing.status == RefundStatus.PENDING:
                raise IdempotencyKeyInProgress()
            return existing
        captured = locks.payment
        if captured.status != PaymentStatus.SUCCEEDED:
            raise PaymentNotCaptured(details={"payment": captured.public_id})
        refundable = captured.amount - captured.amount_refunded
        if amount > refundable:
            raise RefundExceedsCaptured(details={"refundable": refundable, "requested": amount})
        try:
            with transaction.atomic():
                refund = _refund_reserve_locked(
                    payment=captured,
                    amount=amount,
                    reason=reason,
                    note=note,
                    actor=actor,
                    idempotency_key=idempotency_key,
                    fingerprint=fingerprint,
                )
        except IntegrityError as exc:
            # The same key, at the same moment, for another payment: the other request won.
            raise IdempotencyKeyInProgress() from exc
    return _refund_send(refund=refund, payment=captured, actor=actor)


def _refund_reserve_locked(
    *,
    payment: PaymentAttempt,
    amount: int,
    reason: Refund.Reason,
    note: str,
    actor: User | None,
    idempotency_key: str,
    fingerprint: str,
) -> Refund:
    """Reserve ``amount`` on the locked captured payment and record the pending refund, in the
    caller's transaction; the check constraint refuses a reservation above the captured amount."""
    payment.amount_refunded += amount
    payment.save(update_fields=["amount_refunded"])
    refund = Refund.objects.create(
        payment=payment,
        amount=amount,
        currency=payment.currency,
        reason=reason,
        note=note.strip(),
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        actor=actor,
    )
    audit_record(
        action="billing.refund_requested",
        actor=actor,
        target=refund,
        details={"payment": payment.public_id, "amount": amount, "reason": str(reason)},
    )
    return refund


def refund_fingerprint(*, payment: PaymentAttempt, amount: int, reason: str, note: str) -> str:
    """What makes two refund requests "the same request" for an idempotency key."""
    return hashlib.sha256(
        json.dumps([payment.public_id, amount, str(reason), note.strip()]).encode()
    ).hexdigest()


def refund_reconcile(*, refund: Refund, actor: User | None = None) -> Refund:
    """Ask the gateway what happened to a pending refund and record it. One the gateway never
    received is sent again under the same key (a key is processed at most once)."""
    if refund.status != RefundStatus.PENDING:
        return refund
    payment = refund.payment
    try:
        result = gateway_get(payment.gateway).refund_lookup(idempotency_key=refund.public_id)
    except GatewayUnavailable:
        return refund
    if result is not None:
        return _refund_outcome_record(refund=refund, result=result, actor=actor)
    return _refund_send(refund=refund, payment=payment, actor=actor)


def _refund_send(*, refund: Refund, payment: PaymentAttempt, actor: User | None) -> Refund:
    """Send a committed pending refund to the gateway and record the outcome; a timeout leaves
    it pending for ``refund_reconcile``."""
    try:
        result = gateway_get(payment.gateway).refund(
            request=RefundRequest(
                charge_reference=payment.gateway_reference,
                amount=refund.amount,
                currency=refund.currency,
                idempotency_key=refund.public_id,
            )
        )
    except GatewayUnavailable:
        log.warning("billing.refund_outcome_unknown", refund=refund.public_id)
        return refund
    return _refund_outcome_record(refund=refund, result=result, actor=actor)


def _refund_outcome_record(*, refund: Refund, result: RefundResult, actor: User | None) -> Refund:
    with transaction.atomic(durable=True):
        locks = lock_refund(refund)
        current = locks.refund
        target = RefundStatus(result.status.value)
        if current.status == target:
            return current
        current.status = REFUND.check(current=current.status, target=target)
        current.gateway_reference = result.reference
        current.failure_code = result.failure_code
        current.completed_at = clock.now()
        current.save(update_fields=["status", "gateway_reference", "failure_code", "completed_at"])
        if target == RefundStatus.SUCCEEDED:
            _refund_succeeded(locks)
        else:
            locks.payment.amount_refunded -= current.amount
            locks.payment.save(update_fields=["amount_refunded"])
        audit_record(
            action=f"billing.refund_{target}",
            actor=actor,
            target=current,
            details={"payment": locks.payment.public_id, "amount": current.amount},
        )
    return current


def _refund_succeeded(locks: RefundLocks) -> None:
    refund = locks.refund
    ledger_post(**refund_succeeded_posting(locks=locks, at=clock.now()))
    event_publish(
        event_type="refund.created",
        object_type="refund",
        object_id=refund.public_id,
        key=refund.public_id,
    )
    email_send_template(
        to=locks.customer.email,
        template="billing_refund_issued",
        context={
            **billing_links(invoice=locks.invoice),
            "invoice_number": locks.invoice.number,
            "amount": Money(refund.amount, refund.currency).format(),
        },
        dedupe_key=f"billing_refund_issued:{refund.public_id}",
    )


# --- Staff: extending a subscription -----------------------------------------------------------------
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
        if now >= current.current_period_end:
            raise TransitionRefused(
                "The current period has ended and is being renewed; try again in a minute.",
                details={"object": "subscription", "from": current.status},
            )
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


# --- News from the gateway about cards and customers ------------------------------------------------
def payment_method_card_update(
    *, payment_method: PaymentMethod, brand: str, last4: str, exp_month: int, exp_year: int
) -> PaymentMethod:
    """Keep a saved card's brand, last four digits and expiry as the gateway has them now (the bank
    renewed the card, or the customer updated it). Unchanged details change nothing."""
    with transaction.atomic(durable=True):
        lock_customer(payment_method.customer)
        method = PaymentMethod.objects.select_for_update().get(pk=payment_method.pk)
        changed = {
            name: value
            for name, value in (
                ("brand", brand),
                ("last4", last4),
                ("exp_month", exp_month),
                ("exp_year", exp_year),
            )
            if getattr(method, name) != value
        }
        if not changed:
            return method
        for name, value in changed.items():
            setattr(method, name, value)
        method.save(update_fields=sorted(changed))
        audit_record(
            action="billing.payment_method_updated",
            target=method,
            details={"fields": sorted(changed), "brand": method.brand, "last4": method.last4},
        )
    return method


def customer_gateway_forget(*, customer: Customer, gateway: str, reference: str) -> Customer:
    """The gateway deleted its customer record (and with it the saved cards): the cards are marked
    detached and the link is cleared, so the next card setup creates a new gateway customer. A link
    that has changed since (a new gateway customer) is left alone."""
    with transaction.atomic(durable=True):
        locked = lock_customer(customer)
        if locked.gateway != gateway or locked.gateway_reference != reference:
            return locked
        now = clock.now()
        forgotten = list(
            PaymentMethod.objects.select_for_update()
            .filter(customer=locked, gateway=gateway, detached_at__isnull=True)
            .values_list("public_id", flat=True)
        )
        PaymentMethod.objects.filter(customer=locked, public_id__in=forgotten).update(
            detached_at=now, is_default=False
        )
        locked.gateway_reference = ""
        locked.save(update_fields=["gateway_reference"])
        audit_record(
            action="billing.gateway_customer_deleted",
            target=locked,
            details={"gateway": gateway, "payment_methods": forgotten},
        )
    return locked
