"""Row locks for billing writes, always taken in one order:

    customer -> subscription -> invoice -> payment -> refund

(and, only with installation-wide invoice numbering, the sequence row last). Every write locks all
the rows it needs with one call below, at the start of its transaction, passing the most specific
object: its parents are locked too, in that order, so two writes can never wait for each other in a
cycle. The rows come back fresh from the database; use them, not the objects passed in.

On SQLite ``select_for_update`` is a no-op, and the IMMEDIATE transactions of the embedded default
serialize writers instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q

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
