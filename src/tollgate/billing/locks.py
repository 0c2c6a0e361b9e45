"""Row locks for billing writes, always taken in one order:

    customer -> subscription -> invoice -> payment -> refund

(and, only with installation-wide invoice numbering, the sequence row last). Changes of who belongs
to a customer's organisation lock the organisation and the account before all of these
(``organisations.locks``). Every write locks all
the rows it needs with one call below, at the start of its transaction, passing the most specific
object: its parents are locked too, in that order, so two writes can never wait for each other in a
cycle. The rows come back fresh from the database; use them, not the objects passed in.

The billing clock works in batches: it claims customers without waiting (``lock_customers_due``:
``SKIP LOCKED``) and then locks the batch's rows level by level in the same order, one statement per
level in primary-key order (``lock_batch``).

On SQLite ``select_for_update`` is a no-op, and the IMMEDIATE transactions of the embedded default
serialize writers instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet

from tollgate.billing.models import Customer, Invoice, PaymentAttempt, Refund, Subscription
from tollgate.billing.states import InvoiceStatus


@dataclass(frozen=True, slots=True)
class SubscriptionLocks:
    customer: Customer
    subscription: Subscription


@dataclass(frozen=True, slots=True)
class InvoiceLocks:
    customer: Customer
    subscription: Subscription | None
    invoice: Invoice


@dataclass(frozen=True, slots=True)
class PaymentLocks:
    customer: Customer
    subscription: Subscription | None
    invoice: Invoice
    payment: PaymentAttempt


@dataclass(frozen=True, slots=True)
class RefundLocks:
    customer: Customer
    subscription: Subscription | None
    invoice: Invoice
    payment: PaymentAttempt
    refund: Refund


def _require_transaction() -> None:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("row locks are only meaningful inside a transaction")


def lock_customer(customer: Customer) -> Customer:
    _require_transaction()
    return Customer.objects.select_for_update().get(pk=customer.pk)


def lock_subscription(subscription: Subscription) -> SubscriptionLocks:
    locked_customer = lock_customer(subscription.customer)
    return SubscriptionLocks(
        customer=locked_customer,
        subscription=Subscription.objects.select_for_update().get(pk=subscription.pk),
    )


def lock_invoice(invoice: Invoice) -> InvoiceLocks:
    _require_transaction()
    locked_customer = Customer.objects.select_for_update().get(pk=invoice.customer_id)
    locked_subscription = (
        Subscription.objects.select_for_update().get(pk=invoice.subscription_id)
        if invoice.subscription_id is not None
        else None
    )
    return InvoiceLocks(
        customer=locked_customer,
        subscription=locked_subscription,
        invoice=Invoice.objects.select_for_update().get(pk=invoice.pk),
    )


def lock_payment(payment: PaymentAttempt) -> PaymentLocks:
    parents = lock_invoice(payment.invoice)
    return PaymentLocks(
        customer=parents.customer,
        subscription=parents.subscription,
        invoice=parents.invoice,
        # The card comes along (not locked): receipts and notices name it.
        payment=PaymentAttempt.objects.select_for_update(of=("self",))
        .select_related("payment_method")
        .get(pk=payment.pk),
    )


def lock_refund(refund: Refund) -> RefundLocks:
    parents = lock_payment(refund.payment)
    return RefundLocks(
        customer=parents.customer,
        subscription=parents.subscription,
        invoice=parents.invoice,
        payment=parents.payment,
        refund=Refund.objects.select_for_update().get(pk=refund.pk),
    )


def lock_subscription_invoices(*, subscription: Subscription, with_paid: bool) -> list[Invoice]:
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


def lock_customers_due(
    due: QuerySet[Subscription] | QuerySet[Invoice],
    *,
    batch_size: int,
    skip: set[int],
    order: str,
) -> list[Customer]:
    """Claim up to ``batch_size`` customers with due work (rows of ``due``) that no other worker
    holds, skipping those in ``skip``: ``SELECT ... FOR UPDATE SKIP LOCKED`` never waits, so a
    claim cannot join a deadlock.

    The due rows are read first, in ``order`` (the column of the index that finds them, e.g. the
    period end: the longest due first), a few at a time; then only their customers are locked, in
    key order. One statement joining the two let the planner walk every customer (or every
    subscription) in key order, expecting due rows that a run mostly does not find."""
    _require_transaction()
    claimed: list[Customer] = []
    seen = set(skip)
    while len(claimed) < batch_size:
        candidates = set(
            due.exclude(customer_id__in=seen)
            .order_by(order)
            .values_list("customer_id", flat=True)[: batch_size * 2]
        )
        if not candidates:
            break
        seen |= candidates
        claimed += (
            Customer.objects.select_for_update(skip_locked=True)
            .filter(pk__in=candidates)
            .order_by("pk")[: batch_size - len(claimed)]
        )
    return sorted(claimed, key=lambda customer: customer.pk)


@dataclass(frozen=True, slots=True)
class BatchLocks:
    """A batch's locked rows by primary key, level by level."""

    customers: dict[int, Customer] = field(default_factory=dict)
    subscriptions: dict[int, Subscription] = field(default_factory=dict)
    invoices: dict[int, Invoice] = field(default_factory=dict)
    payments: dict[int, PaymentAttempt] = field(default_factory=dict)


def lock_batch(
    *,
    customers: QuerySet[Customer] | None = None,
    subscriptions: QuerySet[Subscription] | None = None,
    invoices: QuerySet[Invoice] | None = None,
    payments: QuerySet[PaymentAttempt] | None = None,
) -> BatchLocks:
    """Lock the rows of each given queryset, in the one order (customers -> subscriptions ->
    invoices -> payments), each level with one statement in primary-key order. Payments come with
    their card (not locked), as ``lock_payment``'s do."""
    _require_transaction()
    locked = BatchLocks()
    if customers is not None:
        locked.customers.update(_by_pk(customers))
    if subscriptions is not None:
        locked.subscriptions.update(_by_pk(subscriptions))
    if invoices is not None:
        locked.invoices.update(_by_pk(invoices))
    if payments is not None:
        locked.payments.update(_by_pk(payments.select_related("payment_method"), of=("self",)))
    return locked


def _by_pk(queryset: QuerySet[Any], of: tuple[str, ...] = ()) -> dict[int, Any]:
    return {row.pk: row for row in queryset.select_for_update(of=of).order_by("pk")}
