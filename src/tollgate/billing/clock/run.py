"""The billing clock: derives the billing work that is due from the database and does it.

Work, in this order, each as batches until nothing due is left:

1. payments and refunds whose outcome has been pending or unknown for over a minute: asked about
   by their idempotency key, and sent again under the same key if the gateway never received them;
   then payments left waiting for the customer's authentication (3-D Secure) for longer than
   ``BILLING_PAYMENT_ACTION_EXPIRY_HOURS``: failed with ``authentication_expired`` unless the
   gateway already has their outcome, and dunning goes on;
2. subscriptions at the end of their period: renewed (the next period's invoice is created and
   finalized, its charge due as the period begins), ended (cancellation at period end; a trial
   without a card when its plan, or else ``BILLING_TRIAL_END_WITHOUT_CARD``, says "canceled") or
   moved to their
   scheduled price;
3. incomplete subscriptions whose first invoice stayed unpaid for 23 hours: ``incomplete_expired``,
   the invoice voided (as at Stripe);
4. open invoices whose next payment attempt is due (renewals and dunning retries): charged off
   session, the pending attempts committed before any gateway call.

Any number of workers can run it at once. Each batch claims customers with ``SELECT ... FOR UPDATE
SKIP LOCKED`` (``locks.lock_customers_due``; on PostgreSQL, SQLite's IMMEDIATE transactions serialize
instead) and then locks their rows in the fixed order (customer -> subscription -> invoice ->
payment; ``locks.lock_batch``): a claim never waits, so it cannot join a deadlock. The unique constraints (one invoice per subscription period, one live payment
per invoice) hold even if that reasoning were wrong. A crash loses nothing: all work is derived from
state, a half-done step is either committed or not, and a payment sent but not recorded is pending
and is reconciled with the gateway by its idempotency key before the invoice is charged again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import structlog
from django.db import transaction
from django.db.models import Q, QuerySet

from tollgate.audit.services import audit_record
from tollgate.billing import services
from tollgate.billing.clock.renewals import renewal_charges_send
from tollgate.billing.conf import billing_settings
from tollgate.billing.errors import PaymentMethodRequired
from tollgate.billing.gateways.registry import gateway_get
from tollgate.billing.locks import InvoiceLocks, lock_batch, lock_customers_due
from tollgate.billing.models import (
    Customer,
    Invoice,
    PaymentAttempt,
    PaymentMethod,
    Refund,
    Subscription,
)
from tollgate.billing.services.payments import payment_send
from tollgate.billing.states import (
    PAYMENT_LIVE,
    SUBSCRIPTION_ENDED,
    InvoiceStatus,
    PaymentStatus,
    RefundStatus,
    SubscriptionStatus,
)
from tollgate.billing.steps.discounts import redemptions_release_locked
from tollgate.billing.steps.invoices import (
    invoice_void_locked,
)
from tollgate.billing.steps.payments import (
    PendingCharge,
    payment_begin_locked,
    payment_fail_without_card_locked,
)
from tollgate.billing.steps.renewals import (
    PlainRenewal,
    renewal_is_plain,
    renewals_begin_locked,
    subscription_period_end_cancel_locked,
    subscription_period_end_ends,
    subscription_renew_locked,
    trial_convert_locked,
)
from tollgate.billing.steps.subscriptions import (
    subscription_end_locked,
)
from tollgate.catalog.models import Price
from tollgate.core import clock

log = structlog.get_logger(__name__)

INCOMPLETE_EXPIRES_AFTER = dt.timedelta(hours=23)
RECONCILE_AFTER = dt.timedelta(minutes=1)
BATCH_SIZE = 100
_Row = TypeVar("_Row", PaymentAttempt, Refund)
_RENEWING = (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
_UNSETTLED = (PaymentStatus.PENDING, PaymentStatus.UNKNOWN)


@dataclass
class BillingRunResult:
    renewed: int = 0
    ended: int = 0
    expired: int = 0
    charged: int = 0
    reconciled: int = 0
    actions_expired: int = 0
    failed: int = 0

    @property
    def handled(self) -> int:
        return (
            self.renewed
            + self.ended
            + self.expired
            + self.charged
            + self.reconciled
            + self.actions_expired
        )


Progress = Callable[[int], object]


def billing_run(
    *,
    until: dt.datetime | None = None,
    batch_size: int = BATCH_SIZE,
    on_progress: Progress | None = None,
) -> BillingRunResult:
    """Do all billing work due at ``until`` (default: now) and report what was done.

    An item that fails is logged, counted in ``failed`` and left as it was for the next run; it does
    not stop the others.
    """
    due_at = until or clock.now()
    result = BillingRunResult()
    skip: set[int] = set()  # customers left alone for the rest of this run
    progress = on_progress or (lambda count: None)
    # First settle what earlier runs left in flight (by the real clock: it is about requests, not
    # the schedule), so the invoices they hold can be charged in this run.
    progress(_reconcile(now=clock.now(), batch_size=batch_size, result=result))
    # Before the expiry of incomplete subscriptions, which waits for their payments to settle.
    progress(_action_expiry(due_at=due_at, batch_size=batch_size, result=result))
    for step in (_period_ends, _incomplete_expiry, _due_charges):
        while claimed := step(due_at=due_at, batch_size=batch_size, result=result, skip=skip):
            progress(claimed)
    return result


def _guarded(
    customer: Customer, skip: set[int], result: BillingRunResult, work: Callable[[], None]
) -> None:
    """Run one customer's work in a savepoint: if it fails, only it is undone, logged and skipped."""
    try:
        with transaction.atomic():
            work()
    except Exception:
        log.exception("billing.clock_item_failed", customer=customer.public_id)
        skip.add(customer.pk)
        result.failed += 1


# --- 1. Reconciliation ------------------------------------------------------------------------------------
def _reconcile(*, now: dt.datetime, batch_size: int, result: BillingRunResult) -> int:
    before = now - RECONCILE_AFTER
    settled = 0
    for payment in _oldest_first(
        PaymentAttempt.objects.filter(status__in=_UNSETTLED, created_at__lte=before), batch_size
    ):
        if services.payment_reconcile(payment=payment).status not in _UNSETTLED:
            settled += 1
    for refund in _oldest_first(
        Refund.objects.filter(status=RefundStatus.PENDING, created_at__lte=before).select_related(
            "payment"
        ),
        batch_size,
    ):
        if services.refund_reconcile(refund=refund).status != RefundStatus.PENDING:
            settled += 1
    result.reconciled += settled
    return settled


def _action_expiry(*, due_at: dt.datetime, batch_size: int, result: BillingRunResult) -> int:
    """Close the attempts that have waited too long for authentication (each under its own locks,
    taken by the service; a worker that finds one already closed by another leaves it)."""
    expired_before = due_at - billing_settings().payment_action_expiry
    closed = 0
    for payment in _oldest_first(
        PaymentAttempt.objects.filter(
            status=PaymentStatus.REQUIRES_ACTION, created_at__lte=expired_before
        ),
        batch_size,
    ):
        try:
            outcome = services.payment_action_expire(payment=payment)
        except Exception:
            log.exception("billing.action_expiry_failed", payment=payment.public_id)
            result.failed += 1
            continue
        if outcome.status != PaymentStatus.REQUIRES_ACTION:
            closed += 1
    result.actions_expired += closed
    return closed


def _oldest_first(queryset: QuerySet[_Row], batch_size: int) -> Iterator[_Row]:
    """Every row of ``queryset``, oldest first, fetched ``batch_size`` at a time (keyset pages)."""
    page = queryset.order_by("created_at", "pk")
    while rows := list(page[:batch_size]):
        yield from rows
        last = rows[-1]
        page = page.filter(
            Q(created_at__gt=last.created_at) | Q(created_at=last.created_at, pk__gt=last.pk)
        )


# --- 2. Period ends -------------------------------------------------------------------------------------
def _period_ends(
    *, due_at: dt.datetime, batch_size: int, result: BillingRunResult, skip: set[int]
) -> int:
    due = Subscription.objects.filter(status__in=_RENEWING, current_period_end__lte=due_at)
    gateway_name = gateway_get().name
    with transaction.atomic(durable=True):
        customers = lock_customers_due(
            due, batch_size=batch_size, skip=skip, order="current_period_end"
        )
        # The claimed customers' due subscriptions, locked in one query (after their customers, in
        # pk order), with the prices and plans the renewal reads; and the customers' cards.
        subscriptions = {
            subscription.customer_id: subscription
            for subscription in lock_batch(
                subscriptions=due.filter(customer__in=customers)
            ).subscriptions.values()
        }
        _prices_attach(list(subscriptions.values()))
        cards = {
            method.customer_id: method
            for method in PaymentMethod.objects.filter(customer__in=customers, is_default=True)
        }
        plain, charges = _plain_renewals(customers, subscriptions, cards, gateway_name)
        result.renewed += len(plain)
        for customer in customers:
            subscription = subscriptions.get(customer.pk)
            if subscription is not None and customer.pk not in plain:
                has_card = customer.pk in cards
                _guarded(
                    customer,
                    skip,
                    result,
                    partial(_period_end, customer, subscription, has_card, result),
                )
    renewal_charges_send(charges)
    result.charged += len(charges)
    return len(customers)


def _prices_attach(subscriptions: list[Subscription]) -> None:
    """Give the subscriptions their prices and plans, read once for the batch (a few prices are
    shared by many subscriptions)."""
    wanted = {subscription.price_id for subscription in subscriptions} | {
        subscription.scheduled_price_id
        for subscription in subscriptions
        if subscription.scheduled_price_id is not None
    }
    prices = {
        price.pk: price for price in Price.objects.select_related("plan").filter(pk__in=wanted)
    }
    for subscription in subscriptions:
        subscription.price = prices[subscription.price_id]
        if subscription.scheduled_price_id is not None:
            subscription.scheduled_price = prices[subscription.scheduled_price_id]


def _plain_renewals(
    customers: list[Customer],
    subscriptions: dict[int, Subscription],
    cards: dict[int, PaymentMethod],
    gateway_name: str,
) -> tuple[set[int], list[PendingCharge]]:
    """Renew the batch's plain renewals set-wise (``billing.renewals``) in a savepoint; returns
    the customers done and the charges to send after commit. If that fails, nothing of it stays
    and every renewal of the batch goes the one-by-one way, where a failure stays with its item."""
    plain = [
        PlainRenewal(customer=customer, subscription=subscription, method=cards[customer.pk])
        for customer in customers
        if (subscription := subscriptions.get(customer.pk)) is not None
        and renewal_is_plain(
            subscription=subscription, method=cards.get(customer.pk), gateway_name=gateway_name
        )
    ]
    try:
        with transaction.atomic():
            charges = renewals_begin_locked(renewals=plain, gateway_name=gateway_name)
    except Exception:
        log.exception("billing.plain_renewals_failed", customers=len(plain))
        for renewal in plain:  # undo what the attempt changed in memory
            renewal.customer.refresh_from_db(fields=["next_invoice_sequence"])
            renewal.subscription.refresh_from_db(
                fields=["current_period_start", "current_period_end"]
            )
        return set(), []
    return {renewal.customer.pk for renewal in plain}, charges


def _period_end(
    customer: Customer, subscription: Subscription, has_card: bool, result: BillingRunResult
) -> None:
    if subscription_period_end_ends(subscription=subscription, has_card=has_card):
        subscription_period_end_cancel_locked(subscription=subscription, has_card=has_card)
        result.ended += 1
        return
    if subscription.status == SubscriptionStatus.TRIALING:
        trial_convert_locked(customer=customer, subscription=subscription, has_card=has_card)
    else:
        subscription_renew_locked(customer=customer, subscription=subscription)
    result.renewed += 1


# --- 3. Incomplete subscriptions that expire ---------------------------------------------------------------
def _incomplete_expiry(
    *, due_at: dt.datetime, batch_size: int, result: BillingRunResult, skip: set[int]
) -> int:
    expired_before = due_at - INCOMPLETE_EXPIRES_AFTER
    due = Subscription.objects.filter(
        status=SubscriptionStatus.INCOMPLETE,
        invoices__status=InvoiceStatus.OPEN,
        invoices__finalized_at__lte=expired_before,
    ).exclude(invoices__payments__status__in=sorted(PAYMENT_LIVE))
    with transaction.atomic(durable=True):
        customers = lock_customers_due(due, batch_size=batch_size, skip=skip, order="customer_id")
        for customer in customers:
            incomplete = Subscription.objects.filter(
                customer=customer, status=SubscriptionStatus.INCOMPLETE
            )
            subscription = next(
                iter(lock_batch(subscriptions=incomplete).subscriptions.values()), None
            )
            if subscription is not None:
                _guarded(
                    customer,
                    skip,
                    result,
                    partial(_expire, customer, subscription, expired_before, result),
                )
    return len(customers)


def _expire(
    customer: Customer,
    subscription: Subscription,
    expired_before: dt.datetime,
    result: BillingRunResult,
) -> None:
    invoices = list(
        lock_batch(
            invoices=Invoice.objects.filter(subscription=subscription, status=InvoiceStatus.OPEN)
        ).invoices.values()
    )
    stale = all(
        invoice.finalized_at and invoice.finalized_at <= expired_before for invoice in invoices
    )
    if (
        not invoices
        or not stale
        or PaymentAttempt.objects.filter(
            invoice__in=invoices, status__in=sorted(PAYMENT_LIVE)
        ).exists()
    ):
        return
    for invoice in invoices:
        invoice_void_locked(customer=customer, invoice=invoice)
    now = clock.now()
    redemptions_release_locked(subscription=subscription, now=now)
    subscription_end_locked(
        subscription=subscription, status=SubscriptionStatus.INCOMPLETE_EXPIRED, at=now
    )
    audit_record(action="billing.subscription_expired", target=subscription)
    result.expired += 1


# --- 4. Due charges -------------------------------------------------------------------------------------------
def _due_charges(
    *, due_at: dt.datetime, batch_size: int, result: BillingRunResult, skip: set[int]
) -> int:
    due = Invoice.objects.filter(
        status=InvoiceStatus.OPEN, next_payment_attempt_at__lte=due_at
    ).exclude(payments__status__in=sorted(PAYMENT_LIVE))
    gateway_name = gateway_get().name
    charges: list[PendingCharge] = []
    with transaction.atomic(durable=True):
        customers = lock_customers_due(
            due, batch_size=batch_size, skip=skip, order="next_payment_attempt_at"
        )
        # The claimed customers' due invoices and their subscriptions, each locked in one query
        # (customers -> subscriptions -> invoices, each in pk order).
        invoice_ids = list(due.filter(customer__in=customers).values_list("pk", flat=True))
        rows = lock_batch(
            subscriptions=Subscription.objects.filter(
                pk__in=Invoice.objects.filter(pk__in=invoice_ids).values("subscription_id")
            ).exclude(status__in=sorted(SUBSCRIPTION_ENDED)),
            invoices=Invoice.objects.filter(pk__in=invoice_ids),
        )
        subscriptions = rows.subscriptions
        invoices: dict[int, list[Invoice]] = {}
        for invoice in rows.invoices.values():
            invoices.setdefault(invoice.customer_id, []).append(invoice)
        for customer in customers:
            _guarded(
                customer,
                skip,
                result,
                partial(
                    _begin_charges,
                    customer,
                    invoices.get(customer.pk, []),
                    subscriptions,
                    gateway_name,
                    charges,
                ),
            )
            skip.add(customer.pk)  # all its due invoices were just handled: once per run
    for charge in charges:
        payment_send(charge=charge, actor=None)
        result.charged += 1
    return len(customers)


def _begin_charges(
    customer: Customer,
    invoices: list[Invoice],
    subscriptions: dict[int, Subscription],
    gateway_name: str,
    charges: list[PendingCharge],
) -> None:
    """Record pending attempts for the customer's locked due invoices and add them to ``charges``."""
    begun = []
    for invoice in invoices:
        invoice.customer = customer  # the locked row: the charge request reads its gateway id
        locks = InvoiceLocks(
            customer=customer,
            subscription=subscriptions.get(invoice.subscription_id or 0),
            invoice=invoice,
        )
        try:
            begun.append(
                payment_begin_locked(
                    locks=locks, gateway_name=gateway_name, off_session=True, actor=None
                )
            )
        except PaymentMethodRequired:
            payment_fail_without_card_locked(locks=locks, gateway_name=gateway_name)
    charges.extend(begun)  # only once every attempt of this customer is recorded
