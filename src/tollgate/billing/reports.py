"""Staff reads: finding a customer, the audit events about one, reconciliation, the inbox and the
revenue overview (the customer's page itself reads ``billing.customer_summary``).

Every figure here is read from the billing tables as they are now; nothing is cached or stored.
Amounts are integers in minor units, one figure per currency (currencies are never added up).

**Monthly recurring revenue (MRR)** is what the subscriptions that are paying now (``active`` and
``past_due``: a past-due subscription is still billed, as at Stripe) bring in per month, at the
price they are on now (a scheduled change counts once it takes effect). A price of ``amount``
every ``n`` months (a year is twelve) is worth ``amount / n`` a month. The rounding rule: those
shares are added up exactly, as fractions, and each reported figure (a currency's total, a plan's
line) is rounded once, half up, to a whole minor unit. So twelve yearly subscriptions at 1000 are
exactly 1000 a month, never 12 x 83 = 996, and a plan's lines may differ from the total by less
than one minor unit per line.

MRR is **net of discounts**: a subscription whose live discount covers its current period counts
its price less what the discount takes off it (``discounts.discount_amount_for``), normalised to a
month the same way.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Lower, TruncDate

from tollgate.audit.models import AuditEvent
from tollgate.billing import discounts, periods
from tollgate.billing.models import (
    SUBSCRIPTION_AMOUNT,
    Customer,
    Discount,
    Dispute,
    InboundEvent,
    Invoice,
    LedgerTransaction,
    PaymentAttempt,
    PaymentMethod,
    ReconciliationRun,
    Refund,
    Subscription,
)
from tollgate.billing.states import InvoiceStatus, PaymentStatus, SubscriptionStatus
from tollgate.core import clock
from tollgate.core.money import Money
from tollgate.organisations.models import Organisation

REPORT_WINDOW = dt.timedelta(days=30)
LOOKUP_LIMIT = 50
# Subscriptions that are paid for now: they count towards MRR.
PAYING = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
# Subscriptions that have not ended and are not waiting for a first payment.
LIVE = (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


# --- Finding a customer ----------------------------------------------------------------------------------
# Each public id prefix: the record it names and the path from that record to its customer's key.
_BY_PREFIX: dict[str, tuple[type[Any], str]] = {
    "cus": (Customer, "pk"),
    "usr": (Customer, "pk"),  # looked up by the account's id below
    "sub": (Subscription, "customer_id"),
    "inv": (Invoice, "customer_id"),
    "pay": (PaymentAttempt, "invoice__customer_id"),
    "ref": (Refund, "payment__invoice__customer_id"),
    "pm": (PaymentMethod, "customer_id"),
    "dsp": (Dispute, "payment__invoice__customer_id"),
    "txn": (LedgerTransaction, "customer_id"),
}


def customers_matching(*, query: str) -> QuerySet[Customer]:
    """The customers a staff search names, unordered (the caller sorts and pages).

    A public id (``cus_``, ``usr_`` of the account, ``sub_``, ``inv_``, ``pay_``, ``ref_``, a
    card's ``pm_``, a dispute's ``dsp_``, a ledger transaction's ``txn_``; any case) finds the one
    customer it belongs to. Anything else is matched against an invoice number, the gateway's
    customer id and the operator's external id (exactly), the last four digits of a card (four
    digits), and, from three characters on, the start of the billing or account email (any case)
    and any part of the name.

    Each way of matching is its own subquery of customer ids, joined by ``UNION``: on PostgreSQL
    each one reads its index (the lower-cased emails' prefix index, the names' trigram index, the
    cards' last four digits), where one ``OR`` over a join of the tables would read every customer.
    """
    text = query.strip()
    customers = Customer.objects.select_related("user")
    if not text:
        return customers.none()
    prefix, _, body = text.partition("_")
    if body and prefix.lower() in _BY_PREFIX:
        public_id = f"{prefix.lower()}_{body.upper()}"
        model, owner = _BY_PREFIX[prefix.lower()]
        named = {"user__public_id" if prefix.lower() == "usr" else "public_id": public_id}
        found = model.objects.filter(**named).values(owner)[:1]
        return customers.filter(pk__in=found)
    ids: list[QuerySet[Any, Any]] = [
        Invoice.objects.filter(number=text.upper()).values("customer_id"),
        Customer.objects.filter(gateway_reference=text).values("pk"),
        Customer.objects.filter(external_id=text).values("pk"),
    ]
    if len(text) == 4 and text.isdigit():
        ids.append(PaymentMethod.objects.filter(last4=text).values("customer_id"))
    if len(text) >= 3:
        start = text.lower()
        accounts = get_user_model().objects.alias(lowered=Lower("email"))
        ids += [
            Customer.objects.alias(lowered=Lower("email"))
            .filter(lowered__startswith=start)
            .values("pk"),
            Customer.objects.filter(
                user__in=accounts.filter(lowered__startswith=start).values("pk")
            ).values("pk"),
            Customer.objects.filter(name__icontains=text).values("pk"),
        ]
    first, *rest = ids
    return customers.filter(pk__in=first.union(*rest))


def customer_lookup(*, query: str, limit: int = LOOKUP_LIMIT) -> list[Customer]:
    """Up to ``limit`` customers ``customers_matching`` the query, newest first."""
    return list(customers_matching(query=query).order_by("-created_at", "-pk")[:limit])


# --- One customer --------------------------------------------------------------------------------------
def customer_get(*, public_id: str) -> Customer | None:
    return Customer.objects.select_related("user").filter(public_id=public_id).first()


def audit_events_about(*, customer: Customer) -> QuerySet[AuditEvent]:
    """The audit events whose target is the customer, its account or one of its billing records
    (one query: each kind of record is a subquery, never a list of ids)."""

    def about(model: type[Any], **lookup: Any) -> Q:
        return Q(
            target_type=model._meta.label_lower,
            target_id__in=model.objects.filter(**lookup).values("public_id"),
        )

    wanted = (
        Q(target_type=Customer._meta.label_lower, target_id=customer.public_id)
        | about(Subscription, customer=customer)
        | about(Invoice, customer=customer)
        | about(PaymentAttempt, invoice__customer=customer)
        | about(Refund, payment__invoice__customer=customer)
        | about(PaymentMethod, customer=customer)
    )
    if customer.user is not None:
        wanted |= Q(target_type=customer.user._meta.label_lower, target_id=customer.user.public_id)
    if customer.organisation_id is not None:
        wanted |= about(Organisation, pk=customer.organisation_id)
    return AuditEvent.objects.filter(wanted).order_by("-created_at", "-pk")


# --- Reconciliation and the inbox ----------------------------------------------------------------------
def reconciliation_runs() -> QuerySet[ReconciliationRun]:
    """The reconciliation runs, newest first (counts only; the details are per run)."""
    return (
        ReconciliationRun.objects.select_related("actor")
        .defer("heals", "mismatches", "unresolved")
        .order_by("-started_at", "-pk")
    )


def reconciliation_run_get(*, public_id: str) -> ReconciliationRun | None:
    return ReconciliationRun.objects.select_related("actor").filter(public_id=public_id).first()


def inbound_events(*, status: str = "") -> QuerySet[InboundEvent]:
    """The inbound gateway events, newest first, optionally of one status."""
    events = InboundEvent.objects.defer("payload").order_by("-received_at", "-pk")
    if status:
        events = events.filter(status=status)
    return events


def inbound_event_counts() -> dict[str, int]:
    """How many inbound events there are of each status."""
    rows = InboundEvent.objects.order_by().values("status").annotate(n=Count("pk"))
    return {row["status"]: row["n"] for row in rows}


# --- Revenue ---------------------------------------------------------------------------------------------
def monthly_share(*, amount: int, interval: str, interval_count: int) -> Fraction:
    """What a price of ``amount`` per ``interval_count`` ``interval`` is worth a month, exactly."""
    return Fraction(
        amount, periods.interval_months(interval=interval, interval_count=interval_count)
    )


def round_half_up(value: Fraction) -> int:
    """``value`` rounded to a whole number, halves away from zero (the amounts are never negative)."""
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    return sign * ((2 * magnitude.numerator + magnitude.denominator) // (2 * magnitude.denominator))


@dataclass(frozen=True, slots=True)
class PlanLine:
    plan: str
    currency: str
    subscriptions: int
    mrr: Money


@dataclass(frozen=True, slots=True)
class PlanCount:
    plan: str
    trialing: int = 0
    active: int = 0
    past_due: int = 0

    @property
    def total(self) -> int:
        return self.trialing + self.active + self.past_due


@dataclass(frozen=True, slots=True)
class Rate:
    """``part`` of ``whole``, with its percentage to one decimal (rounded half up) for display."""

    part: int
    whole: int

    @property
    def percent(self) -> str:
        if not self.whole:
            return "n/a"
        tenths = round_half_up(Fraction(self.part * 1000, self.whole))
        return f"{tenths // 10}.{tenths % 10}%"


@dataclass(frozen=True, slots=True)
class DayCount:
    day: dt.date
    count: int


@dataclass(frozen=True)
class RevenueOverview:
    as_of: dt.datetime
    since: dt.datetime
    mrr: list[Money]
    mrr_by_plan: list[PlanLine]
    paying_subscriptions: int
    by_plan: list[PlanCount]
    trials_ended: Rate
    trials_running: int
    churned: int
    churned_mrr: list[Money]
    churn: Rate
    failed_payments: int
    failed_by_day: list[DayCount]
    at_risk: list[Money]
    at_risk_invoices: int


def _paying_or(subscriptions: QuerySet[Subscription] | None) -> QuerySet[Subscription]:
    if subscriptions is not None:
        return subscriptions
    return Subscription.objects.filter(status__in=PAYING)


def revenue_mrr(*, subscriptions: QuerySet[Subscription] | None = None) -> list[PlanLine]:
    """MRR per (plan, currency) of the paying subscriptions (or of ``subscriptions``), by the
    module's rounding rule: each line rounded once."""
    rows = (
        _paying_or(subscriptions)
        .order_by()
        .values(
            "price__plan__name",
            "price__currency",
            "price__interval",
            "price__interval_count",
        )
        .annotate(paying=Sum(SUBSCRIPTION_AMOUNT), n=Count("pk"))
    )
    shares: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        key = (row["price__plan__name"], row["price__currency"])
        shares[key] += monthly_share(
            amount=row["paying"] or 0,
            interval=row["price__interval"],
            interval_count=row["price__interval_count"],
        )
        counts[key] += row["n"]
    for key, off in _discount_shares(_paying_or(subscriptions)).items():
        shares[key] -= off
    return [
        PlanLine(
            plan=plan,
            currency=currency,
            subscriptions=counts[plan, currency],
            mrr=Money(round_half_up(share), currency),
        )
        for (plan, currency), share in sorted(shares.items())
    ]


def revenue_mrr_totals(*, subscriptions: QuerySet[Subscription] | None = None) -> list[Money]:
    """MRR per currency, each total rounded once (not the sum of rounded lines)."""
    rows = (
        _paying_or(subscriptions)
        .order_by()
        .values("price__currency", "price__interval", "price__interval_count")
        .annotate(paying=Sum(SUBSCRIPTION_AMOUNT))
    )
    totals: dict[str, Fraction] = defaultdict(Fraction)
    for row in rows:
        totals[row["price__currency"]] += monthly_share(
            amount=row["paying"] or 0,
            interval=row["price__interval"],
            interval_count=row["price__interval_count"],
        )
    for (_, currency), off in _discount_shares(_paying_or(subscriptions)).items():
        totals[currency] -= off
    return [Money(round_half_up(total), currency) for currency, total in sorted(totals.items())]


def _discount_shares(subscriptions: QuerySet[Subscription]) -> dict[tuple[str, str], Fraction]:
    """What the live discounts of ``subscriptions`` take off their MRR now, per (plan name,
    currency), exactly (one query, two when there are discounts)."""
    shares: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    rows = (
        Discount.objects.filter(
            subscription__in=subscriptions.order_by().values("pk"), ended_at__isnull=True
        )
        .select_related("coupon", "subscription__price__plan")
        .prefetch_related("coupon__plans")
    )
    for discount in rows:
        subscription = discount.subscription
        price = subscription.price
        off = discounts.discount_amount_for(
            discount=discount,
            price=price,
            amount=subscription.amount,
            period_start=subscription.current_period_start,
        )
        if off:
            shares[price.plan.name, price.currency] += monthly_share(
                amount=off, interval=price.interval, interval_count=price.interval_count
            )
    return shares


def subscriptions_by_plan() -> list[PlanCount]:
    """How many subscriptions that have not ended are trialing, active or past due, per plan."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    rows = (
        Subscription.objects.filter(status__in=LIVE)
        .order_by()
        .values("price__plan__name", "status")
        .annotate(n=Count("pk"))
    )
    for row in rows:
        counts[row["price__plan__name"]][row["status"]] = row["n"]
    return sorted(
        (PlanCount(plan=plan, **by_status) for plan, by_status in counts.items()),
        key=lambda line: (-line.total, line.plan),
    )


def _paid_invoice(**lookup: Any) -> Exists:
    return Exists(
        Invoice.objects.filter(subscription=OuterRef("pk"), status=InvoiceStatus.PAID, **lookup)
    )


def trials_converting(*, since: dt.datetime, until: dt.datetime) -> Rate:
    """Of the trials that ended in ``[since, until)``, how many converted: the first period after
    the trial (the invoice starting at the trial's end) was paid, whenever it was."""
    ended = Subscription.objects.filter(trial_end__gte=since, trial_end__lt=until)
    converted = ended.filter(_paid_invoice(period_start=OuterRef("trial_end")))
    return Rate(part=converted.count(), whole=ended.count())


def churned_subscriptions(*, since: dt.datetime, until: dt.datetime) -> QuerySet[Subscription]:
    """Paying subscriptions that ended in ``[since, until)``: canceled after at least one paid
    invoice (a trial that ends unpaid is a trial not converting, not churn)."""
    return Subscription.objects.filter(
        _paid_invoice(),
        status=SubscriptionStatus.CANCELED,
        ended_at__gte=since,
        ended_at__lt=until,
    )


def churn_rate(*, since: dt.datetime, until: dt.datetime) -> Rate:
    """Churn over ``[since, until)``: of the subscriptions paying at ``since`` (a paid invoice
    covers that moment), how many had ended by ``until``."""
    paying_at_start = Subscription.objects.filter(
        _paid_invoice(period_start__lte=since, period_end__gt=since)
    )
    lost = paying_at_start.filter(
        status=SubscriptionStatus.CANCELED, ended_at__gte=since, ended_at__lt=until
    )
    return Rate(part=lost.count(), whole=paying_at_start.count())


def failed_payments_by_day(*, since: dt.datetime, until: dt.datetime) -> list[DayCount]:
    """Failed payment attempts per UTC day of ``[since, until)``, every day listed (zeros too)."""
    rows = (
        PaymentAttempt.objects.filter(
            status=PaymentStatus.FAILED, completed_at__gte=since, completed_at__lt=until
        )
        .annotate(day=TruncDate("completed_at", tzinfo=dt.UTC))
        .order_by()
        .values("day")
        .annotate(n=Count("pk"))
    )
    found = {row["day"]: row["n"] for row in rows}
    first, last = since.astimezone(dt.UTC).date(), (until - dt.timedelta(microseconds=1)).date()
    days = (last - first).days + 1
    return [
        DayCount(day=day, count=found.get(day, 0))
        for day in (first + dt.timedelta(days=offset) for offset in range(days))
    ]


def amount_at_risk() -> tuple[list[Money], int]:
    """What open invoices in dunning (at least one failed attempt) still owe, per currency, and
    how many invoices that is."""
    rows = (
        Invoice.objects.filter(
            Exists(
                PaymentAttempt.objects.filter(invoice=OuterRef("pk"), status=PaymentStatus.FAILED)
            ),
            status=InvoiceStatus.OPEN,
        )
        .order_by()
        .values("currency")
        .annotate(owed=Sum(F("total") - F("amount_paid")), n=Count("pk"))
    )
    amounts = [Money(row["owed"] or 0, row["currency"]) for row in rows]
    return sorted(amounts, key=lambda money: money.currency), sum(row["n"] for row in rows)


def revenue_overview(*, now: dt.datetime | None = None) -> RevenueOverview:
    """The revenue page: MRR, subscriptions by plan, trial conversion, churn and failed payments
    over the last 30 days, and the amount at risk, as of ``now`` (default: the clock)."""
    as_of = now or clock.now()
    since = as_of - REPORT_WINDOW
    by_plan = subscriptions_by_plan()
    churned = churned_subscriptions(since=since, until=as_of)
    failed = failed_payments_by_day(since=since, until=as_of)
    at_risk, at_risk_invoices = amount_at_risk()
    return RevenueOverview(
        as_of=as_of,
        since=since,
        mrr=revenue_mrr_totals(),
        mrr_by_plan=revenue_mrr(),
        paying_subscriptions=sum(line.active + line.past_due for line in by_plan),
        by_plan=by_plan,
        trials_ended=trials_converting(since=since, until=as_of),
        trials_running=sum(line.trialing for line in by_plan),
        churned=churned.count(),
        churned_mrr=revenue_mrr_totals(subscriptions=churned),
        churn=churn_rate(since=since, until=as_of),
        failed_payments=sum(day.count for day in failed),
        failed_by_day=failed,
        at_risk=at_risk,
        at_risk_invoices=at_risk_invoices,
    )


def disputes_for_staff() -> QuerySet[Dispute]:
    """Disputes as staff see them: those needing attention first, then open ones by when evidence
    is due (soonest first, unknown last), then closed ones newest first; with the payment, invoice
    and customer joined (one query however many there are)."""
    return Dispute.objects.select_related("payment__invoice__customer").order_by(
        F("needs_attention").desc(),
        F("closed_at").desc(nulls_first=True),
        F("evidence_due_by").asc(nulls_last=True),
        "-opened_at",
        "-id",
    )


def disputes_needing_attention_count() -> int:
    """How many disputes staff have not looked at since they last changed (one COUNT query)."""
    return Dispute.objects.filter(needs_attention=True).count()
