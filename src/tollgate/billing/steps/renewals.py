"""Renewal: what happens when a subscription reaches the end of its period, one by one or
set-wise, with one set of rules and one builder of the period's invoice.

At its period end a subscription is, in this order of precedence:

- ended (``subscription_period_end_cancel_locked``): a cancellation was scheduled for the
  period end, or a trial ends without a card and its plan (or else
  ``BILLING_TRIAL_END_WITHOUT_CARD``) says "canceled";
- converted from its trial (``trial_convert_locked``): the next period starts and its invoice is
  finalized; it is ``active`` with a card (the invoice is due as the period begins) and
  ``incomplete`` without one;
- renewed (``subscription_renew_locked``): a scheduled price change takes effect (a new interval
  starts its own schedule), the next period starts and its invoice is finalized, due as the period
  begins.

A renewal is *plain* (``renewal_is_plain``) when an active subscription has nothing else to decide:
no cancellation, price or seats change scheduled, a price above zero, a default card on the configured
gateway, per-customer invoice numbering. The billing clock renews a batch of plain renewals
set-wise (``renewals_begin_locked``) with a fixed number of statements per batch: the same
builder (``steps.invoices.period_invoice_build``) and the same checks as one by one, in bulk (drafts
get their lines, the draft -> open transition and the lines' total are checked at finalization),
and the first payment attempt recorded as pending, to be sent after commit.

Steps: they run in the caller's transaction on rows it has locked (customer -> subscription) and
never call a gateway.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Case, DateTimeField, F, Value, When

from tollgate.audit.models import AuditEvent
from tollgate.audit.services import audit_event_build, audit_record
from tollgate.billing import periods
from tollgate.billing.conf import InvoiceNumbering, billing_settings, trial_end_without_card
from tollgate.billing.entitlements import entitlements_changed
from tollgate.billing.models import Customer, Invoice, PaymentAttempt, PaymentMethod, Subscription
from tollgate.billing.periods import price_months
from tollgate.billing.states import InvoiceStatus, SubscriptionStatus
from tollgate.billing.steps.invoices import (
    invoice_draft_for_period_locked,
    invoice_drafts_for_periods_locked,
    invoice_finalize_locked,
    invoice_frozen,
    invoice_paid_apply,
    invoice_paid_publish,
    invoices_finalize_locked,
    invoices_paid_save_locked,
)
from tollgate.billing.steps.payments import (
    PendingCharge,
    charge_request_for,
    payment_attempt_build,
)
from tollgate.billing.steps.subscriptions import (
    subscription_end_locked,
    subscription_event_publish,
    subscription_move_locked,
)
from tollgate.core import clock
from tollgate.core.outbox import outbox_batch

CYCLE = Invoice.BillingReason.SUBSCRIPTION_CYCLE


# --- One by one -------------------------------------------------------------------------------------------
def subscription_period_end_ends(*, subscription: Subscription, has_card: bool) -> bool:
    """Whether the subscription ends at its period end instead of renewing (see the module)."""
    return subscription.cancel_at_period_end or _trial_ends_without_card(subscription, has_card)


def subscription_period_end_cancel_locked(*, subscription: Subscription, has_card: bool) -> None:
    """End the subscription at its period end: canceled, as scheduled or for want of a card."""
    without_card = _trial_ends_without_card(subscription, has_card)
    subscription_end_locked(
        subscription=subscription,
        status=SubscriptionStatus.CANCELED,
        at=subscription.current_period_end,
    )
    audit_record(
        action="billing.subscription_ended",
        target=subscription,
        details={"reason": "trial_ended_without_card" if without_card else "canceled"},
    )


def _trial_ends_without_card(subscription: Subscription, has_card: bool) -> bool:
    return (
        subscription.status == SubscriptionStatus.TRIALING
        and not has_card
        and trial_end_without_card(subscription.price.plan) == SubscriptionStatus.CANCELED
    )


def trial_convert_locked(
    *, customer: Customer, subscription: Subscription, has_card: bool
) -> Invoice:
    """End the trial at its period end: the first paid period starts, ``active`` with a card and
    ``incomplete`` without one, and its invoice is finalized (due as the period begins when the
    subscription is active)."""
    period = _next_period_locked(customer=customer, subscription=subscription)
    target = SubscriptionStatus.ACTIVE if has_card else SubscriptionStatus.INCOMPLETE
    subscription_move_locked(subscription=subscription, target=target)  # publishes too
    return _period_invoice_locked(customer=customer, subscription=subscription, period=period)


def subscription_renew_locked(*, customer: Customer, subscription: Subscription) -> Invoice:
    """Renew the subscription at its period end: a scheduled price or seats change takes effect, the next
    period starts and its invoice is finalized, due as the period begins."""
    period = _next_period_locked(customer=customer, subscription=subscription)
    subscription_event_publish(subscription=subscription, event_type="subscription.updated")
    return _period_invoice_locked(customer=customer, subscription=subscription, period=period)


def _next_period_locked(*, customer: Customer, subscription: Subscription) -> periods.Period:
    end = subscription.current_period_end
    if subscription.scheduled_price is not None:
        new_price = subscription.scheduled_price
        if price_months(new_price) != price_months(subscription.price):
            subscription.billing_anchor = end  # a new interval starts its own schedule
        subscription.price, subscription.scheduled_price = new_price, None
        entitlements_changed(customer=customer)
    if subscription.scheduled_seats is not None:
        subscription.seats, subscription.scheduled_seats = subscription.scheduled_seats, None
    period = periods.period_at(
        anchor=subscription.billing_anchor, months=price_months(subscription.price), at=end
    )
    subscription.current_period_start, subscription.current_period_end = period.start, period.end
    subscription.save(
        update_fields=[
            "price",
            "scheduled_price",
            "seats",
            "scheduled_seats",
            "billing_anchor",
            "current_period_start",
            "current_period_end",
        ]
    )
    return period


def _period_invoice_locked(
    *, customer: Customer, subscription: Subscription, period: periods.Period
) -> Invoice:
    invoice = invoice_draft_for_period_locked(
        subscription=subscription, period=period, billing_reason=CYCLE
    )
    invoice_finalize_locked(customer=customer, subscription=subscription, invoice=invoice)
    if (
        invoice.status == InvoiceStatus.OPEN
        and subscription.status != SubscriptionStatus.INCOMPLETE
    ):
        invoice.next_payment_attempt_at = period.start  # due as the period begins
        invoice.save(update_fields=["next_payment_attempt_at"])
    audit_record(
        action="billing.subscription_renewed",
        target=subscription,
        details={"invoice": invoice.public_id, "period_start": period.start.isoformat()},
    )
    return invoice


# --- Set-wise ---------------------------------------------------------------------------------------------
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
        and subscription.scheduled_seats is None
        and subscription.price.amount > 0
        and method is not None
        and method.gateway == gateway_name
        and billing_settings().invoice_numbering == InvoiceNumbering.CUSTOMER
    )


def renewals_begin_locked(
    *, renewals: list[PlainRenewal], gateway_name: str
) -> list[PendingCharge]:
    """``subscription_renew_locked`` for a batch of plain renewals, set-wise, followed by the
    first attempt at paying each invoice, recorded as pending (``payment_begin_locked``'s rows).
    Returns the charges to send once the caller's transaction has committed."""
    if not renewals:
        return []
    now = clock.now()
    new_periods: list[periods.Period] = []
    previous_ends: list[dt.datetime] = []
    for renewal in renewals:
        subscription = renewal.subscription
        previous_ends.append(subscription.current_period_end)
        period = periods.period_at(
            anchor=subscription.billing_anchor,
            months=price_months(subscription.price),
            at=subscription.current_period_end,
        )
        subscription.current_period_start, subscription.current_period_end = (
            period.start,
            period.end,
        )
        new_periods.append(period)
    # Set-wise updates, with a per-row CASE only where rows differ: a renewed period starts where
    # the last one ended (period_at keeps the anchor) and ends where its own schedule says.
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
    invoices = invoice_drafts_for_periods_locked(
        due=list(zip(subscriptions, new_periods, strict=True)), billing_reason=CYCLE
    )
    customers = {renewal.customer.pk: renewal.customer for renewal in renewals}
    invoices_finalize_locked(invoices=invoices, customers=customers, at=now)
    # Each customer took exactly one number.
    Customer.objects.filter(pk__in=list(customers)).update(
        next_invoice_sequence=F("next_invoice_sequence") + 1
    )
    free = _free_invoices_settle_locked(invoices=invoices, at=now)
    owing = [
        (renewal, invoice)
        for renewal, invoice in zip(renewals, invoices, strict=True)
        if invoice.pk not in free
    ]
    payments = [
        payment_attempt_build(
            invoice=invoice,
            number=1,
            method=renewal.method,
            gateway_name=gateway_name,
            off_session=True,
        )
        for renewal, invoice in owing
    ]
    PaymentAttempt.objects.bulk_create(payments)
    events = [
        audit_event_build(
            action="billing.subscription_renewed",
            target=renewal.subscription,
            details={"invoice": invoice.public_id, "period_start": period.start.isoformat()},
        )
        for renewal, invoice, period in zip(renewals, invoices, new_periods, strict=True)
    ]
    events.extend(
        audit_event_build(
            action="billing.payment_started",
            target=payment,
            details={"invoice": invoice.public_id, "attempt": 1, "amount": payment.amount},
        )
        for (_, invoice), payment in zip(owing, payments, strict=True)
    )
    AuditEvent.objects.bulk_create(events)
    with outbox_batch():
        for subscription in subscriptions:
            subscription_event_publish(subscription=subscription, event_type="subscription.updated")
        for invoice in invoices:
            if invoice.pk in free:
                invoice_paid_publish(invoice=invoice)
    charges = []
    for (renewal, invoice), payment in zip(owing, payments, strict=True):
        invoice.customer = renewal.customer  # the charge request reads its gateway reference
        request = charge_request_for(payment=payment, invoice=invoice, method=renewal.method)
        charges.append(PendingCharge(payment=payment, request=request))
    return charges


def _free_invoices_settle_locked(*, invoices: list[Invoice], at: dt.datetime) -> set[int]:
    """Mark the finalized invoices of zero (discounted in full) paid, as finalizing one does one by
    one; returns their pks. Nothing is charged for them."""
    free = [invoice for invoice in invoices if invoice.total == 0]
    if free:
        frozen = {invoice.pk: invoice_frozen(invoice) for invoice in free}
        for invoice in free:
            invoice_paid_apply(invoice=invoice, now=at)
        invoices_paid_save_locked(invoices=free, frozen=frozen, at=at)
    return {invoice.pk for invoice in free}
