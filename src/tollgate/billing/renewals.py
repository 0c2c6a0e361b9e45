"""Plain renewals, set-wise: the billing clock's common case with a fixed number of statements per
batch instead of dozens per subscription.

A renewal is *plain* when an active subscription reaches the end of its period with nothing else
to decide: no cancellation or price change scheduled, a price above zero, a default card on the
configured gateway, per-customer invoice numbering. For a batch of them this does, in the clock's
batch transaction and under the rows it locked (customer -> subscription), what
``billing_clock._period_end`` followed by ``payment_begin_locked`` does for one subscription:
the period moves on, the period's invoice is created with its plan line, numbered, finalized and
posted to the ledger, and its first payment attempt is recorded as pending; everything audited.
Then, after that commit, the charges are sent and their outcomes recorded: the successes of the
batch in one transaction (locks customer -> subscription -> invoice -> payment, each taken with one
statement in primary-key order), anything else (a decline, authentication, an unknown outcome, a
row that changed meanwhile) one by one by ``services.payment_outcome_record`` as always.

The rows are the same as on the one-by-one path, built by the same functions of ``services``; the
guarantees too: pending attempts are committed before the gateway is asked, so a crash between
the two is reconciled by idempotency key, and the unique constraints (one invoice per subscription
period, one live attempt per invoice) hold whatever happens.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Case, DateTimeField, F, Value, When

from tollgate.audit.models import AuditEvent
from tollgate.audit.services import audit_event_build
from tollgate.billing import ledger, periods, services
from tollgate.billing.conf import InvoiceNumbering, billing_settings
from tollgate.billing.gateways.base import ChargeResult, ChargeStatus
from tollgate.billing.locks import PaymentLocks
from tollgate.billing.models import (
    Customer,
    Invoice,
    InvoiceLine,
    PaymentAttempt,
    PaymentMethod,
    Subscription,
)
from tollgate.billing.periods import price_months
from tollgate.billing.services.payments import payment_charge_requests_send
from tollgate.billing.states import PAYMENT, InvoiceStatus, PaymentStatus, SubscriptionStatus
from tollgate.billing.steps.invoices import (
    customer_invoice_number_take,
    invoice_line_rows,
    invoice_paid_apply,
    invoice_paid_publish,
    plan_charge_line,
)
from tollgate.billing.steps.payments import (
    PendingCharge,
    charge_request_for,
    payment_attempt_build,
    payment_notify,
    payment_outcome_audit,
)
from tollgate.billing.steps.subscriptions import subscription_event_publish
from tollgate.core import clock
from tollgate.core.outbox import outbox_batch


@dataclass(frozen=True, slots=True)
class PlainRenewal:
    """A locked customer, its locked subscription at the end of its period, and its card."""

    customer: Customer
    subscription: Subscription
    method: PaymentMethod


def renewal_is_plain(
    *, subscription: Subscription, method: PaymentMethod | None, gateway_name: str
) -> bool:
    """Whether the renewal of ``subscription`` is plain (see the module's docstring)."""
    return (
        subscription.status == SubscriptionStatus.ACTIVE
        and not subscription.cancel_at_period_end
        and subscription.scheduled_price_id is None
        and subscription.price.amount > 0
        and method is not None
        and method.gateway == gateway_name
        and billing_settings().invoice_numbering == InvoiceNumbering.CUSTOMER
    )


def renewals_begin_locked(
    *, renewals: list[PlainRenewal], gateway_name: str
) -> list[PendingCharge]:
    """Renew plain subscriptions, in the caller's transaction and under its locks: the next
    period, its invoice (finalized and posted) and a pending first attempt at paying it, for each.
    Returns the charges to send once that transaction has committed."""
    if not renewals:
        return []
    now = clock.now()
    invoices: list[Invoice] = []
    new_periods: list[periods.Period] = []
    previous_ends: list[dt.datetime] = []
    for renewal in renewals:
        subscription, price = renewal.subscription, renewal.subscription.price
        previous_ends.append(subscription.current_period_end)
        period = periods.period_at(
            anchor=subscription.billing_anchor,
            months=price_months(price),
            at=subscription.current_period_end,
        )
        subscription.current_period_start, subscription.current_period_end = (
            period.start,
            period.end,
        )
        new_periods.append(period)
        invoices.append(
            Invoice(
                customer=renewal.customer,
                subscription=subscription,
                billing_reason=Invoice.BillingReason.SUBSCRIPTION_CYCLE,
                currency=price.currency,
                period_start=period.start,
                period_end=period.end,
                total=price.amount,
                number=customer_invoice_number_take(renewal.customer),
                status=InvoiceStatus.OPEN,
                finalized_at=now,
            )
        )
    # Set-wise updates, with a per-row CASE only where rows differ: each customer takes exactly
    # one number, and a renewed period starts where the last one ended (period_at keeps the
    # anchor) and ends where its own schedule says.
    subscriptions = [renewal.subscription for renewal in renewals]
    if all(period.start == ended for period, ended in zip(new_periods, previous_ends, strict=True)):
        Subscription.objects.filter(pk__in=[s.pk for s in subscriptions]).update(
            current_period_start=F("current_period_end"),
            current_period_end=Case(
                *[When(pk=s.pk, then=Value(s.current_period_end)) for s in subscriptions],
                output_field=DateTimeField(),
            ),
        )
    else:
        Subscription.objects.bulk_update(
            subscriptions, ["current_period_start", "current_period_end"]
        )
    Customer.objects.filter(pk__in=[renewal.customer.pk for renewal in renewals]).update(
        next_invoice_sequence=F("next_invoice_sequence") + 1
    )
    Invoice.objects.bulk_create(invoices)
    InvoiceLine.objects.bulk_create(
        [
            row
            for renewal, invoice, period in zip(renewals, invoices, new_periods, strict=True)
            for row in invoice_line_rows(
                invoice=invoice,
                lines=[plan_charge_line(price=renewal.subscription.price, period=period)],
            )
        ]
    )
    ledger.ledger_post_many(
        [
            ledger.invoice_finalized_posting(customer=renewal.customer, invoice=invoice, at=now)
            for renewal, invoice in zip(renewals, invoices, strict=True)
        ]
    )
    payments = [
        payment_attempt_build(
            invoice=invoice,
            number=1,
            method=renewal.method,
            gateway_name=gateway_name,
            off_session=True,
        )
        for renewal, invoice in zip(renewals, invoices, strict=True)
    ]
    PaymentAttempt.objects.bulk_create(payments)
    events: list[AuditEvent] = []
    for renewal, invoice, payment, period in zip(
        renewals, invoices, payments, new_periods, strict=True
    ):
        events.append(
            audit_event_build(
                action="billing.subscription_renewed",
                target=renewal.subscription,
                details={"invoice": invoice.public_id, "period_start": period.start.isoformat()},
            )
        )
        events.append(
            audit_event_build(
                action="billing.payment_started",
                target=payment,
                details={"invoice": invoice.public_id, "attempt": 1, "amount": payment.amount},
            )
        )
    AuditEvent.objects.bulk_create(events)
    with outbox_batch():
        for subscription in subscriptions:
            subscription_event_publish(subscription=subscription, event_type="subscription.updated")
    charges = []
    for renewal, invoice, payment in zip(renewals, invoices, payments, strict=True):
        invoice.customer = renewal.customer  # the charge request reads its gateway reference
        request = charge_request_for(payment=payment, invoice=invoice, method=renewal.method)
        charges.append(PendingCharge(payment=payment, request=request))
    return charges


def renewal_charges_send(charges: list[PendingCharge]) -> None:
    """Send committed pending charges (outside any transaction) and record their outcomes: the
    successes together, anything else one by one."""
    results = list(zip(charges, payment_charge_requests_send(charges), strict=True))
    recorded = _successes_record(
        [
            (charge, result)
            for charge, result in results
            if result is not None and result.status == ChargeStatus.SUCCEEDED
        ]
    )
    for charge, result in results:
        if charge.payment.pk not in recorded:
            services.payment_outcome_record(payment=charge.payment, result=result, actor=None)


def _successes_record(successes: list[tuple[PendingCharge, ChargeResult]]) -> set[int]:
    """Record captured payments (the renewals' own pending charges) in one transaction; returns
    the pks recorded. A payment that is no longer pending, or whose invoice or subscription is not
    in the state a plain renewal leaves it in, is left for the one-by-one path."""
    if not successes:
        return set()
    results = {charge.payment.pk: result for charge, result in successes}
    # Which rows to lock comes from the renewals' own invoices (an invoice never changes hands);
    # their state is read under the locks.
    known = [charge.payment.invoice for charge, _ in successes]
    invoice_ids = sorted(invoice.pk for invoice in known)
    now = clock.now()
    with transaction.atomic(durable=True):
        customers = {
            customer.pk: customer
            for customer in Customer.objects.select_for_update()
            .filter(pk__in={invoice.customer_id for invoice in known})
            .order_by("pk")
        }
        subscriptions = {
            subscription.pk: subscription
            for subscription in Subscription.objects.select_for_update()
            .filter(pk__in={invoice.subscription_id for invoice in known})
            .order_by("pk")
        }
        invoices = {
            invoice.pk: invoice
            for invoice in Invoice.objects.select_for_update()
            .filter(pk__in=invoice_ids)
            .order_by("pk")
        }
        locked = (
            PaymentAttempt.objects.select_for_update(of=("self",))
            .select_related("payment_method")
            .filter(pk__in=results)
            .order_by("pk")
        )
        recorded: list[PaymentLocks] = []
        for payment in locked:
            invoice = invoices[payment.invoice_id]
            subscription = subscriptions.get(invoice.subscription_id or 0)
            if (
                payment.status != PaymentStatus.PENDING
                or invoice.status != InvoiceStatus.OPEN
                or subscription is None
                or subscription.status != SubscriptionStatus.ACTIVE
            ):
                continue
            result = results[payment.pk]
            payment.status = PAYMENT.check(current=payment.status, target=PaymentStatus.SUCCEEDED)
            payment.gateway_reference = result.reference or payment.gateway_reference
            payment.completed_at = now
            invoice_paid_apply(invoice=invoice, now=now)
            recorded.append(
                PaymentLocks(
                    customer=customers[invoice.customer_id],
                    subscription=subscription,
                    invoice=invoice,
                    payment=payment,
                )
            )
        if not recorded:
            return set()
        # Every recorded payment succeeded now and every invoice is paid in full now: one UPDATE
        # each; only the gateway's references differ from row to row.
        PaymentAttempt.objects.filter(pk__in=[locks.payment.pk for locks in recorded]).update(
            status=PaymentStatus.SUCCEEDED, completed_at=now
        )
        PaymentAttempt.objects.bulk_update(
            [locks.payment for locks in recorded], ["gateway_reference"]
        )
        Invoice.objects.filter(pk__in=[locks.invoice.pk for locks in recorded]).update(
            status=InvoiceStatus.PAID,
            amount_paid=F("total"),
            paid_at=now,
            next_payment_attempt_at=None,
        )
        ledger.ledger_post_many(
            [ledger.payment_captured_posting(locks=locks, at=now) for locks in recorded]
        )
        AuditEvent.objects.bulk_create(
            [
                audit_event_build(**payment_outcome_audit(locks=locks, actor=None))
                for locks in recorded
            ]
        )
        with outbox_batch():
            for locks in recorded:
                invoice_paid_publish(invoice=locks.invoice)
                payment_notify(locks)
    return {locks.payment.pk for locks in recorded}
