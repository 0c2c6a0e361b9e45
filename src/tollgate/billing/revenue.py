"""Revenue over time, for the staff revenue page: MRR month by month, its movements (new,
expansion, contraction, churned), churn and net revenue retention, and the cancellation survey.

Amounts are integers in minor units, one series per currency (currencies are never added up).

**What a month-end is.** Each month is read at its last instant (the current month at the moment
of the report). A customer's MRR there is the sum over its subscriptions of the price it was on
then, normalised to a month (``reports.monthly_share``: ``amount / months`` as an exact fraction).
The rounding rule is the one of ``billing.reports``: shares are added exactly and each reported
figure (a month's MRR, each movement, net new MRR) is rounded once, half up, to a minor unit; so
the movements of a month may differ from its net new MRR by less than one minor unit each.

**Where the history comes from.** Subscriptions keep only their current price, so the price a
subscription was on at a moment is read from its invoices: every plan charge (the first invoice,
each renewal) and every upgrade's prorated charge names the price and the period it pays for.
At a month-end, a subscription is on the price of its latest such line that started by then
(open, paid or uncollectible invoices; drafts and voided invoices say nothing). A subscription
counts towards MRR at a month-end when it had started, had not ended (``ended_at``) and was not
in its trial (``trial_end``): **a trialing subscription counts as 0 MRR**; it becomes new MRR
when its first paid period starts.

**What it cannot know.** A plan change is seen through its invoice: an upgrade from the moment
its prorated charge starts, a downgrade or interval change from the renewal that applies it (a
change still scheduled is not MRR yet). MRR is net of discounts: a priced line's share is taken
down in the proportion its invoice's DISCOUNT lines took off it (a renewal discounted by 20% counts
80% of its price; an upgrade's discounted remaining time, the same share of the new price). When
a subscription went past due or unpaid is not kept, so it counts until it ends, as past-due
subscriptions do on the overview. Subscriptions that never started (``incomplete``,
``incomplete_expired``) never count, and one that started incomplete and was paid later counts
from its first period's start. A renewal the billing clock has not invoiced yet keeps the
previous price; a subscription whose invoices all ended before the months shown (never renewed
since) counts in none of them.

Everything is read in two queries however many months and customers there are: the invoice lines
that carry a price (with their subscription's dates), and the cancellations per reason.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import cast

from django.db.models import Count, Q

from tollgate.billing.models import InvoiceLine, Subscription
from tollgate.billing.reports import monthly_share, round_half_up
from tollgate.billing.states import InvoiceStatus, SubscriptionStatus
from tollgate.core import clock
from tollgate.core.money import Money

DEFAULT_MONTHS = 12
MAX_MONTHS = 36
# Invoices whose lines say which price a subscription was on (a draft may still change; a voided
# invoice was never owed).
PRICED_INVOICES = (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE)
PRICED_LINES = (InvoiceLine.Kind.PLAN_CHARGE, InvoiceLine.Kind.PRORATION_DEBIT)
NEVER_STARTED = (SubscriptionStatus.INCOMPLETE, SubscriptionStatus.INCOMPLETE_EXPIRED)
NO_ANSWER = "No answer"


# --- Months ----------------------------------------------------------------------------------------------
def month_add(month: dt.date, count: int) -> dt.date:
    """The first day of the month ``count`` months after ``month`` (negative goes back)."""
    index = month.year * 12 + month.month - 1 + count
    return dt.date(index // 12, index % 12 + 1, 1)


def month_start(month: dt.date) -> dt.datetime:
    return dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC)


def month_ends(*, as_of: dt.datetime, months: int) -> list[tuple[dt.date, dt.datetime]]:
    """The ``months`` months up to the one of ``as_of``, preceded by the month before them (the
    starting point of the first month's movements): each month's first day and the instant it is
    read at (its last microsecond, or ``as_of`` for the current month)."""
    current = as_of.astimezone(dt.UTC).date().replace(day=1)
    ends = []
    for offset in range(-months, 1):
        month = month_add(current, offset)
        last = month_start(month_add(month, 1)) - dt.timedelta(microseconds=1)
        ends.append((month, min(last, as_of)))
    return ends


# --- Percentages -----------------------------------------------------------------------------------------
def tenths_of_percent(part: Fraction | int, whole: Fraction | int) -> int | None:
    """``part / whole`` in tenths of a percent, rounded half up once; None when ``whole`` is 0."""
    if not whole:
        return None
    return round_half_up(Fraction(part) * 1000 / Fraction(whole))


def percent_text(tenths: int | None) -> str:
    if tenths is None:
        return "n/a"
    sign = "-" if tenths < 0 else ""
    return f"{sign}{abs(tenths) // 10}.{abs(tenths) % 10}%"


# --- The figures -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MonthFigures:
    """One currency's month: MRR at its end and the movements since the previous month's end.

    Movements are per customer: new (no MRR -> some), churned (some -> none), expansion and
    contraction (more or less, both non-zero), all as positive amounts. ``start_*`` is the previous
    month-end.
    """

    month: dt.date
    at: dt.datetime
    currency: str
    mrr: int
    customers: int
    start_mrr: int
    start_customers: int
    new: int
    expansion: int
    contraction: int
    churned: int
    net_new: int
    lost: int  # churned + contraction: what the revenue churn rate counts
    retained: int  # start - lost + expansion: what net revenue retention counts
    new_customers: int
    churned_customers: int
    # Exact tenths of a percent (None when nobody paid at the start of the month).
    customer_churn: int | None
    revenue_churn: int | None
    net_retention: int | None

    def money(self, amount: int) -> Money:
        return Money(amount, self.currency)

    @property
    def label(self) -> str:
        return f"{self.month:%b %Y}"

    @property
    def shown(self) -> dict[str, str]:
        """Every amount and rate as the page shows it (``$96.00``, ``25.0%``, ``n/a``)."""
        amounts = {name: self.money(getattr(self, name)).format() for name in _AMOUNTS}
        rates = {name: percent_text(getattr(self, name)) for name in _RATES}
        return amounts | rates


_AMOUNTS = (
    "mrr",
    "start_mrr",
    "new",
    "expansion",
    "contraction",
    "churned",
    "net_new",
    "lost",
    "retained",
)
_RATES = ("customer_churn", "revenue_churn", "net_retention")


@dataclass(frozen=True, slots=True)
class ReasonCount:
    reason: str  # the stored value ("" when the survey was skipped)
    label: str
    count: int


@dataclass(frozen=True)
class RevenueHistory:
    as_of: dt.datetime
    since: dt.datetime
    months: int
    by_currency: dict[str, list[MonthFigures]]
    reasons: list[ReasonCount]

    @property
    def currencies(self) -> list[str]:
        return sorted(self.by_currency)


@dataclass(frozen=True, slots=True)
class PricedPeriod:
    start: dt.datetime
    currency: str
    share: Fraction


@dataclass(slots=True)
class PriceHistory:
    """What the invoices tell of one subscription: the prices it was on, in the order they
    started, with its customer, trial end and end."""

    customer: int
    trial_end: dt.datetime | None
    ended_at: dt.datetime | None
    periods: list[PricedPeriod] = field(default_factory=list)

    def share_at(self, at: dt.datetime) -> PricedPeriod | None:
        """The price it was paying at ``at``, or None (not started, in its trial or ended)."""
        if self.ended_at is not None and self.ended_at <= at:
            return None
        if self.trial_end is not None and self.trial_end > at:
            return None
        latest = bisect.bisect_right([period.start for period in self.periods], at) - 1
        return self.periods[latest] if latest >= 0 else None


def price_histories(*, first_at: dt.datetime, last_at: dt.datetime) -> list[PriceHistory]:
    """The price history of every subscription that may have paid between ``first_at`` and
    ``last_at``: the priced lines whose period overlaps those moments (one query over invoice
    lines; about one row per subscription and billing period shown)."""
    rows = (
        InvoiceLine.objects.filter(
            kind__in=(*PRICED_LINES, InvoiceLine.Kind.DISCOUNT),
            price__isnull=False,
            period_start__isnull=False,
            period_start__lte=last_at,
            period_end__gt=first_at,  # what paid for the months shown, not every year before
            invoice__status__in=PRICED_INVOICES,
            invoice__subscription__isnull=False,
        )
        .exclude(invoice__subscription__status__in=NEVER_STARTED)
        .filter(
            Q(invoice__subscription__ended_at__isnull=True)
            | Q(invoice__subscription__ended_at__gt=first_at)
        )
        .order_by()
        .values_list(
            "invoice_id",
            "kind",
            "amount",
            "invoice__customer_id",
            "invoice__subscription_id",
            "invoice__subscription__trial_end",
            "invoice__subscription__ended_at",
            "period_start",
            "price__amount",
            "price__currency",
            "price__interval",
            "price__interval_count",
            "price__per_seat",
            "seats",
        )
    )
    found: dict[int, PriceHistory] = {}
    lines = list(rows)
    discounted: dict[int, int] = defaultdict(int)  # per invoice, what its DISCOUNT lines took off
    for invoice, kind, line_amount, *_ in lines:
        if kind == InvoiceLine.Kind.DISCOUNT:
            discounted[invoice] -= line_amount
    for (
        invoice,
        kind,
        line_amount,
        customer,
        subscription,
        trial_end,
        ended_at,
        start,
        amount,
        currency,
        unit,
        count,
        per_seat,
        seats,
    ) in lines:
        if kind == InvoiceLine.Kind.DISCOUNT:
            continue
        history = found.setdefault(subscription, PriceHistory(customer, trial_end, ended_at))
        paying = amount * seats if per_seat else amount
        share = monthly_share(amount=paying, interval=unit, interval_count=count)
        if discounted[invoice] and line_amount > 0:
            share *= Fraction(max(line_amount - discounted[invoice], 0), line_amount)
        history.periods.append(
            PricedPeriod(start=cast(dt.datetime, start), currency=currency, share=share)
        )  # never None: filtered above
    for history in found.values():
        history.periods.sort(key=lambda period: period.start)
    return list(found.values())


def customer_mrr_at_month_ends(
    *, ends: Sequence[dt.datetime]
) -> list[dict[tuple[int, str], Fraction]]:
    """For each instant of ``ends`` (ascending): every (customer, currency) with MRR there and its
    exact MRR. See the module docstring for what counts."""
    snapshots: list[dict[tuple[int, str], Fraction]] = [defaultdict(Fraction) for _ in ends]
    for history in price_histories(first_at=ends[0], last_at=ends[-1]):
        for index, at in enumerate(ends):
            period = history.share_at(at)
            if period is not None:
                snapshots[index][history.customer, period.currency] += period.share
    return [{key: mrr for key, mrr in snapshot.items() if mrr > 0} for snapshot in snapshots]


def month_figures(
    *,
    month: dt.date,
    at: dt.datetime,
    currency: str,
    before: dict[int, Fraction],
    after: dict[int, Fraction],
) -> MonthFigures:
    """The month from each customer's exact MRR at the previous month-end (``before``) and at its
    end (``after``); a customer missing from one has none there."""
    new = expansion = contraction = churned = Fraction(0)
    new_customers = churned_customers = 0
    for customer in before.keys() | after.keys():
        was, now = before.get(customer, Fraction(0)), after.get(customer, Fraction(0))
        if not was:
            new, new_customers = new + now, new_customers + 1
        elif not now:
            churned, churned_customers = churned + was, churned_customers + 1
        elif now > was:
            expansion += now - was
        else:
            contraction += was - now
    start, end = sum(before.values(), Fraction(0)), sum(after.values(), Fraction(0))
    return MonthFigures(
        month=month,
        at=at,
        currency=currency,
        mrr=round_half_up(end),
        customers=len(after),
        start_mrr=round_half_up(start),
        start_customers=len(before),
        new=round_half_up(new),
        expansion=round_half_up(expansion),
        contraction=round_half_up(contraction),
        churned=round_half_up(churned),
        net_new=round_half_up(end - start),
        lost=round_half_up(churned + contraction),
        retained=round_half_up(start + expansion - contraction - churned),
        new_customers=new_customers,
        churned_customers=churned_customers,
        customer_churn=tenths_of_percent(churned_customers, len(before)),
        revenue_churn=tenths_of_percent(churned + contraction, start),
        net_retention=tenths_of_percent(start + expansion - contraction - churned, start),
    )


def _per_currency(snapshot: dict[tuple[int, str], Fraction], currency: str) -> dict[int, Fraction]:
    return {customer: mrr for (customer, cur), mrr in snapshot.items() if cur == currency}


def cancellation_reasons(*, since: dt.datetime, until: dt.datetime) -> list[ReasonCount]:
    """How many cancellations were asked for in ``[since, until]`` with each survey answer: every
    answer listed (zeros too), then the skipped survey, then any answer no longer offered."""
    rows = (
        Subscription.objects.filter(canceled_at__gte=since, canceled_at__lte=until)
        .order_by()
        .values_list("cancellation_reason")
        .annotate(n=Count("pk"))
    )
    counts = dict(rows)
    choices = Subscription.CancellationReason
    listed = [
        ReasonCount(reason=value, label=str(label), count=counts.pop(value, 0))
        for value, label in choices.choices
    ]
    listed.append(ReasonCount(reason="", label=NO_ANSWER, count=counts.pop("", 0)))
    listed += [
        ReasonCount(reason=value, label=value, count=n) for value, n in sorted(counts.items())
    ]
    return listed


def revenue_history(
    *, months: int = DEFAULT_MONTHS, now: dt.datetime | None = None
) -> RevenueHistory:
    """MRR, its movements, churn and net revenue retention for each of the last ``months`` months
    (the current one included, up to ``now``), per currency, and the cancellation reasons over the
    same months; in two queries."""
    as_of = now or clock.now()
    months = max(1, min(months, MAX_MONTHS))
    ends = month_ends(as_of=as_of, months=months)
    snapshots = customer_mrr_at_month_ends(ends=[at for _, at in ends])
    currencies = sorted({currency for snapshot in snapshots for _, currency in snapshot})
    by_currency = {
        currency: [
            month_figures(
                month=month,
                at=at,
                currency=currency,
                before=_per_currency(snapshots[index - 1], currency),
                after=_per_currency(snapshots[index], currency),
            )
            for index, (month, at) in enumerate(ends)
            if index
        ]
        for currency in currencies
    }
    since = month_start(ends[1][0])
    return RevenueHistory(
        as_of=as_of,
        since=since,
        months=months,
        by_currency=by_currency,
        reasons=cancellation_reasons(since=since, until=as_of),
    )


# --- CSV -------------------------------------------------------------------------------------------------
CSV_CHARTS = ("mrr", "movements", "churn", "retention", "reasons")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(cell: object) -> object:
    """A spreadsheet never reads a text cell as a formula: one starting with ``= + - @`` (or a tab
    or carriage return) gets a leading apostrophe. Numbers are written as they are."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_STARTS):
        return "'" + cell
    return cell


# Per chart: its columns, each a name and what it reads from a month; an amount ("money") is
# written in minor units and again formatted, a rate ("percent") as shown on the page.
_COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "mrr": [("mrr", "money", "mrr"), ("paying_customers", "count", "customers")],
    "movements": [
        ("new", "money", "new"),
        ("expansion", "money", "expansion"),
        ("contraction", "money", "contraction"),
        ("churned", "money", "churned"),
        ("net_new", "money", "net_new"),
    ],
    "churn": [
        ("customers_at_start", "count", "start_customers"),
        ("churned_customers", "count", "churned_customers"),
        ("customer_churn", "percent", "customer_churn"),
        ("start_mrr", "money", "start_mrr"),
        ("lost_mrr", "money", "lost"),
        ("revenue_churn", "percent", "revenue_churn"),
    ],
    "retention": [
        ("start_mrr", "money", "start_mrr"),
        ("retained_mrr", "money", "retained"),
        ("net_revenue_retention", "percent", "net_retention"),
    ],
}


def _header(chart: str) -> list[str]:
    header = ["month", "currency"]
    for name, kind, _ in _COLUMNS[chart]:
        header += [f"{name}_minor", name] if kind == "money" else [name]
    return header


def _cells(chart: str, month: MonthFigures) -> list[object]:
    row: list[object] = [f"{month.month:%Y-%m}", month.currency]
    for _, kind, attribute in _COLUMNS[chart]:
        value = getattr(month, attribute)
        if kind == "money":
            row += [value, month.money(value).format()]
        else:
            row.append(percent_text(value) if kind == "percent" else value)
    return row


def csv_table(
    *, history: RevenueHistory, chart: str, currency: str
) -> tuple[list[str], list[list[object]]]:
    """The header and rows of one chart's CSV (amounts in minor units, each followed by the same
    amount formatted), every text cell made safe for spreadsheets. ``chart`` is one of
    ``CSV_CHARTS``."""
    if chart == "reasons":
        header = ["reason", "label", "cancellations"]
        rows = [[line.reason or "none", line.label, line.count] for line in history.reasons]
    elif chart in _COLUMNS:
        header = _header(chart)
        rows = [_cells(chart, month) for month in history.by_currency.get(currency, [])]
    else:
        raise ValueError(f"unknown chart {chart!r}")
    return header, [[csv_safe(cell) for cell in row] for row in rows]
