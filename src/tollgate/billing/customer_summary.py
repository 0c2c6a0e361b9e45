"""Staff reads about one customer: the summary at the top of the customer's page, its tables and
its audit trail filtered by action, actor and dates.

Amounts are integers in minor units, one figure per currency (currencies are never added up).
**Lifetime value** is what the customer's captured payments brought in minus what was refunded
from them. **Balance** is what the customer's open invoices still owe. **MRR** follows the
revenue page's rule (``billing.reports``): the paying subscription's price per month, rounded
once, half up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, F, Q, QuerySet, Sum

from tollgate.audit.models import AuditEvent
from tollgate.audit.services import audit_details_present
from tollgate.billing.models import (
    Customer,
    Dispute,
    Invoice,
    PaymentAttempt,
    PaymentMethod,
    Refund,
    Subscription,
)
from tollgate.billing.reports import PAYING, audit_events_about, revenue_mrr_totals
from tollgate.billing.states import InvoiceStatus, PaymentStatus, SubscriptionStatus
from tollgate.core import clock
from tollgate.core.money import Money

RECENT = dt.timedelta(days=30)
CARD_EXPIRY_WARNING = dt.timedelta(days=30)
# More refunds than this on one customer is worth a second look.
REFUNDS_FLAG_OVER = 2


@dataclass(frozen=True, slots=True)
class RiskFlag:
    code: str
    label: str


@dataclass(frozen=True, slots=True)
class CustomerSummary:
    subscription: Subscription | None
    mrr: list[Money]
    lifetime_value: list[Money]
    balance: list[Money]
    open_invoices: int
    last_payment: PaymentAttempt | None
    flags: list[RiskFlag] = field(default_factory=list)


def _per_currency(rows: Iterable[dict[str, Any]], name: str) -> list[Money]:
    return sorted(
        (Money(row[name] or 0, row["currency"]) for row in rows), key=lambda money: money.currency
    )


def card_expires_by(method: PaymentMethod, moment: dt.datetime) -> bool:
    """A card is good to the end of its expiry month: it has expired by ``moment`` when that
    month has ended."""
    year, month = (
        (method.exp_year, method.exp_month + 1)
        if method.exp_month < 12
        else (
            method.exp_year + 1,
            1,
        )
    )
    return dt.datetime(year, month, 1, tzinfo=dt.UTC) <= moment


def customer_summary(*, customer: Customer, now: dt.datetime | None = None) -> CustomerSummary:
    """What staff need first about a customer, in a fixed number of queries (eight) however much
    history there is: the current subscription, MRR, lifetime value, balance, the last payment and
    the risk flags (past due, open disputes, the default card expiring within 30 days, a payment
    failed in the last 30 days, more than ``REFUNDS_FLAG_OVER`` refunds)."""
    moment = now or clock.now()
    subscriptions = Subscription.objects.filter(customer=customer)
    current = (
        subscriptions.select_related("price__plan")
        .order_by(F("ended_at").desc(nulls_first=True), "-created_at", "-pk")
        .first()
    )
    payments = PaymentAttempt.objects.filter(invoice__customer=customer)
    captured = (
        payments.filter(status=PaymentStatus.SUCCEEDED)
        .order_by()
        .values("currency")
        .annotate(net=Sum(F("amount") - F("amount_refunded")))
    )
    owed = (
        Invoice.objects.filter(customer=customer, status=InvoiceStatus.OPEN)
        .order_by()
        .values("currency")
        .annotate(owed=Sum(F("total") - F("amount_paid")), n=Count("pk"))
    )
    owed_rows = list(owed)
    last = payments.select_related("invoice").order_by("-created_at", "-pk").first()
    counts = payments.aggregate(
        failed=Count("pk", filter=Q(status=PaymentStatus.FAILED, created_at__gte=moment - RECENT)),
    )
    refunds = Refund.objects.filter(payment__invoice__customer=customer).count()
    disputes = Dispute.objects.filter(
        payment__invoice__customer=customer, closed_at__isnull=True
    ).count()
    card = PaymentMethod.objects.filter(
        customer=customer, is_default=True, detached_at__isnull=True
    ).first()
    flags = []
    if current is not None and current.status in (
        SubscriptionStatus.PAST_DUE,
        SubscriptionStatus.UNPAID,
    ):
        flags.append(RiskFlag("past_due", f"Subscription {current.status.replace('_', ' ')}"))
    if disputes:
        flags.append(RiskFlag("dispute_open", f"{disputes} open dispute{'s' * (disputes > 1)}"))
    if card is not None and card_expires_by(card, moment + CARD_EXPIRY_WARNING):
        flags.append(
            RiskFlag("card_expiring", f"Card expires {card.exp_month:02d}/{card.exp_year}")
        )
    if counts["failed"]:
        flags.append(RiskFlag("payment_failed", f"{counts['failed']} failed payment(s), 30 days"))
    if refunds > REFUNDS_FLAG_OVER:
        flags.append(RiskFlag("refunds", f"{refunds} refunds"))
    return CustomerSummary(
        subscription=current,
        mrr=revenue_mrr_totals(subscriptions=subscriptions.filter(status__in=PAYING)),
        lifetime_value=_per_currency(captured, "net"),
        balance=_per_currency(owed_rows, "owed"),
        open_invoices=sum(row["n"] for row in owed_rows),
        last_payment=last,
        flags=flags,
    )


# --- The customer's tables -------------------------------------------------------------------------------
def customer_subscriptions(*, customer: Customer) -> QuerySet[Subscription]:
    return Subscription.objects.filter(customer=customer).select_related(
        "price__plan", "scheduled_price__plan"
    )


def customer_invoices(*, customer: Customer) -> QuerySet[Invoice]:
    return Invoice.objects.filter(customer=customer).select_related("subscription")


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    invoice: Invoice
    payments: list[PaymentAttempt]

    @property
    def refunded(self) -> int:
        return sum(payment.amount_refunded for payment in self.payments)


def invoice_rows(*, invoices: list[Invoice]) -> list[InvoiceRow]:
    """``invoices`` (one page of them) with their payment attempts, in one query."""
    found: dict[int, list[PaymentAttempt]] = {invoice.pk: [] for invoice in invoices}
    for payment in PaymentAttempt.objects.filter(invoice__in=invoices).order_by(
        "attempt_number", "pk"
    ):
        found[payment.invoice_id].append(payment)
    return [InvoiceRow(invoice, found[invoice.pk]) for invoice in invoices]


def customer_payments(*, customer: Customer) -> QuerySet[PaymentAttempt]:
    return PaymentAttempt.objects.filter(invoice__customer=customer).select_related(
        "invoice", "payment_method"
    )


def customer_refunds(*, customer: Customer) -> QuerySet[Refund]:
    return Refund.objects.filter(payment__invoice__customer=customer).select_related(
        "payment__invoice", "actor"
    )


def customer_payment_methods(*, customer: Customer) -> list[PaymentMethod]:
    return list(
        PaymentMethod.objects.filter(customer=customer).order_by("-is_default", "-created_at")
    )


# --- The audit trail -------------------------------------------------------------------------------------
def customer_audit_trail(
    *,
    customer: Customer,
    action: str = "",
    actor: str = "",
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> QuerySet[AuditEvent]:
    """The audit events about the customer (``billing.reports.audit_events_about``), narrowed to
    an action, an actor (the start of the staff
    member's email or of the recorded actor, any case; ``system`` for events without one) and
    the UTC days ``since`` to ``until``, both included."""
    events = audit_events_about(customer=customer).select_related("actor")
    if action:
        events = events.filter(action=action)
    if actor == "system":
        events = events.filter(actor__isnull=True, actor_repr="")
    elif actor:
        events = events.filter(
            Q(actor__email__istartswith=actor) | Q(actor_repr__istartswith=actor)
        )
    if since is not None:
        events = events.filter(created_at__gte=dt.datetime.combine(since, dt.time(), dt.UTC))
    if until is not None:
        next_day = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), dt.UTC)
        events = events.filter(created_at__lt=next_day)
    return events


def customer_audit_actions(*, customer: Customer) -> list[str]:
    """The actions recorded about the customer, for the filter's choices (one query)."""
    return list(
        audit_events_about(customer=customer)
        .order_by("action")
        .values_list("action", flat=True)
        .distinct()
    )


def audit_rows(events: list[AuditEvent]) -> list[AuditEvent]:
    """``events`` as shown: details stored before empty values were left out, shown without them."""
    for event in events:
        event.details = audit_details_present(event.details)
    return events
