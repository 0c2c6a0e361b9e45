"""Revenue over time, built from real subscriptions moved through the billing clock: MRR at each
month-end, its movements per customer (new, expansion, contraction, churned), churn and net revenue
retention, the cancellation reasons, and the CSV of each chart."""

from __future__ import annotations

import csv
import datetime as dt
import io
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.billing import reports, revenue, services
from tollgate.billing.clock import billing_run
from tollgate.billing.models import Subscription
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load
from tollgate.core import clock

pytestmark = pytest.mark.django_db

JAN = dt.datetime(2026, 1, 10, 9, tzinfo=dt.UTC)
FEB = dt.datetime(2026, 2, 10, 9, tzinfo=dt.UTC)
MAR = dt.datetime(2026, 3, 10, 9, tzinfo=dt.UTC)
AS_OF = dt.datetime(2026, 3, 20, 12, tzinfo=dt.UTC)
YEARLY = {
    "products": [
        {
            "code": "teams",
            "name": "Teams",
            "plans": [
                {
                    "code": "team",
                    "name": "Team",
                    "prices": [{"amount": 1000, "currency": "USD", "interval": "year"}],
                },
                {
                    "code": "euro",
                    "name": "Euro",
                    "prices": [{"amount": 1999, "currency": "EUR", "interval": "month"}],
                },
            ],
        }
    ]
}


def days(count: float) -> dt.timedelta:
    return dt.timedelta(days=count)


def monthly(plan: str) -> Price:
    return Price.objects.get(plan__code=plan, interval="month")


@pytest.fixture
def start(catalog, make_customer):
    made = iter(range(1000))

    def subscribe(
        plan: str, at: dt.datetime, *, price: Price | None = None, trial: bool = False
    ) -> Subscription:
        customer = make_customer(f"r{next(made)}@example.org")
        add_card(customer, CARD_OK)
        with clock.frozen(at):
            return services.subscription_start(
                customer=customer,
                price=price or monthly(plan),
                trial=trial,
                idempotency_key=new_key(),
            )

    return subscribe


def change(subscription: Subscription, plan: str, at: dt.datetime) -> None:
    with clock.frozen(at):
        services.subscription_change_price(
            subscription=subscription, price=monthly(plan), idempotency_key=new_key()
        )


def cancel(subscription: Subscription, at: dt.datetime, reason: str = "", **options) -> None:
    with clock.frozen(at):
        services.subscription_cancel(
            subscription=subscription,
            at_period_end=options.get("at_period_end", False),
            idempotency_key=new_key(),
            reason=reason,
        )


@pytest.fixture
def three_months(start):
    """Jan: four customers start (three on Pro at 2900, one on Starter at 900). Feb: the Starter
    customer upgrades to Pro, one Pro customer cancels, one schedules a downgrade to Starter. Mar:
    the downgrade takes effect at the renewal and a new customer starts on Pro."""
    steady = start("pro", JAN)
    upgrading = start("starter", JAN)
    downgrading = start("pro", JAN)
    leaving = start("pro", JAN)
    with clock.frozen(FEB):
        billing_run()
    change(upgrading, "pro", FEB + days(5))
    change(downgrading, "starter", FEB + days(6))
    cancel(leaving, FEB + days(10), reason="too_expensive")
    with clock.frozen(MAR):
        billing_run()
    start("pro", MAR + days(2))
    return steady, upgrading, downgrading, leaving


def test_each_month_end_shows_mrr_and_its_movements_per_customer(three_months):
    with clock.frozen(AS_OF):
        history = revenue.revenue_history(months=3)
    assert history.currencies == ["USD"]
    jan, feb, mar = history.by_currency["USD"]
    assert [month.month for month in (jan, feb, mar)] == [
        dt.date(2026, 1, 1),
        dt.date(2026, 2, 1),
        dt.date(2026, 3, 1),
    ]
    # January: four new customers, 3 x 2900 + 900.
    assert (jan.start_mrr, jan.mrr, jan.customers) == (0, 9600, 4)
    assert (jan.new, jan.expansion, jan.contraction, jan.churned, jan.net_new) == (
        9600,
        0,
        0,
        0,
        9600,
    )
    assert jan.new_customers == 4
    assert (jan.customer_churn, jan.revenue_churn, jan.net_retention) == (None, None, None)
    # February: +2000 from the upgrade, -2900 from the cancellation; the scheduled downgrade is not
    # MRR yet.
    assert (feb.start_mrr, feb.mrr, feb.customers) == (9600, 8700, 3)
    assert (feb.new, feb.expansion, feb.contraction, feb.churned, feb.net_new) == (
        0,
        2000,
        0,
        2900,
        -900,
    )
    assert (feb.churned_customers, feb.customer_churn) == (1, 250)  # 1 of 4: 25.0%
    assert feb.revenue_churn == 302  # 2900 / 9600 = 30.21%
    assert feb.net_retention == 906  # (9600 + 2000 - 2900) / 9600 = 90.625%, half up
    # March (to the 20th): the downgrade at the renewal, and one new customer.
    assert (mar.start_mrr, mar.mrr, mar.customers) == (8700, 9600, 4)
    assert (mar.new, mar.expansion, mar.contraction, mar.churned, mar.net_new) == (
        2900,
        0,
        2000,
        0,
        900,
    )
    assert (mar.customer_churn, mar.revenue_churn, mar.net_retention) == (0, 230, 770)
    assert revenue.percent_text(mar.net_retention) == "77.0%"


def test_cancellation_reasons_count_every_answer_in_the_months_shown(three_months, start):
    quiet = start("pro", MAR)
    cancel(quiet, MAR + days(1), at_period_end=True)
    with clock.frozen(AS_OF):
        history = revenue.revenue_history(months=3)
    counts = {line.label: line.count for line in history.reasons}
    assert counts["It costs too much"] == 1
    assert counts[revenue.NO_ANSWER] == 1
    assert sum(counts.values()) == 2
    assert len(history.reasons) == len(Subscription.CancellationReason.choices) + 1


def test_a_yearly_price_counts_a_twelfth_and_a_trial_counts_nothing_until_it_ends(start):
    catalog_load(document=YEARLY)
    for _ in range(3):
        start("team", JAN, price=Price.objects.get(plan__code="team"))
    trial = start("starter", JAN + days(15), trial=True)  # 14 days: ends on 8 February
    with clock.frozen(trial.trial_end):
        billing_run()
    with clock.frozen(AS_OF):
        jan, feb, mar = revenue.revenue_history(months=3).by_currency["USD"]
    # 3 x 1000 / 12 = 250 exactly, never 3 x 83 rounded one by one; the trial adds nothing yet.
    assert (jan.mrr, jan.customers) == (250, 3)
    # The trial converted in February: new MRR from its first paid period.
    assert (feb.mrr, feb.new, feb.new_customers) == (250 + 900, 900, 1)
    assert mar.mrr == 1150


def test_each_currency_has_its_own_series_and_customers_never_mix_currencies(start):
    catalog_load(document=YEARLY)
    start("pro", JAN)
    leaving = start("euro", JAN, price=Price.objects.get(plan__code="euro"))
    cancel(leaving, FEB + days(1))
    with clock.frozen(FEB):
        billing_run()
    with clock.frozen(AS_OF):
        history = revenue.revenue_history(months=3)
    assert history.currencies == ["EUR", "USD"]
    eur, usd = history.by_currency["EUR"], history.by_currency["USD"]
    assert [(m.mrr, m.customers, m.churned) for m in eur] == [(1999, 1, 0), (0, 0, 1999), (0, 0, 0)]
    assert [m.mrr for m in usd] == [2900, 2900, 2900]
    assert eur[1].shown["churned"] == "€19.99"
    assert eur[1].customer_churn == 1000  # 100.0%
    assert eur[2].customer_churn is None  # nobody paid in euros at the start of March


def test_rates_round_half_up_to_a_tenth_and_months_are_read_at_their_last_instant():
    assert revenue.tenths_of_percent(Fraction(2900), Fraction(9600)) == 302
    assert revenue.tenths_of_percent(1, 0) is None
    assert revenue.percent_text(-15) == "-1.5%"
    assert revenue.month_add(dt.date(2026, 1, 1), -1) == dt.date(2025, 12, 1)
    ends = revenue.month_ends(as_of=AS_OF, months=3)
    assert [month for month, _ in ends] == [
        dt.date(2025, 12, 1),
        dt.date(2026, 1, 1),
        dt.date(2026, 2, 1),
        dt.date(2026, 3, 1),
    ]
    assert ends[1][1] == dt.datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
    assert ends[-1][1] == AS_OF


def test_the_history_is_read_in_two_queries_however_many_customers(
    start, django_assert_max_num_queries
):
    for index in range(6):
        subscription = start("pro", JAN + days(index))
        if index % 2:
            cancel(subscription, FEB + days(index), reason="not_using")
    with clock.frozen(FEB):
        billing_run()
    with clock.frozen(AS_OF), django_assert_max_num_queries(2):
        history = revenue.revenue_history(months=12)
    assert len(history.by_currency["USD"]) == 12


def read_csv(header: list[str], rows: list[list[object]]) -> list[list[str]]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return list(csv.reader(io.StringIO(out.getvalue())))


def test_the_csv_of_each_chart_has_minor_units_and_formatted_amounts(three_months):
    with clock.frozen(AS_OF):
        history = revenue.revenue_history(months=3)
    header, rows = revenue.csv_table(history=history, chart="movements", currency="USD")
    assert header[:4] == ["month", "currency", "new_minor", "new"]
    assert header[-2:] == ["net_new_minor", "net_new"]
    feb = dict(zip(header, rows[1], strict=True))
    assert (feb["month"], feb["churned_minor"], feb["churned"]) == ("2026-02", 2900, "$29.00")
    # A negative amount is written as a number; its formatted text cannot start a formula.
    assert (feb["net_new_minor"], feb["net_new"]) == (-900, "'-$9.00")
    header, rows = revenue.csv_table(history=history, chart="retention", currency="USD")
    assert header == [
        "month",
        "currency",
        "start_mrr_minor",
        "start_mrr",
        "retained_mrr_minor",
        "retained_mrr",
        "net_revenue_retention",
    ]
    assert rows[1] == ["2026-02", "USD", 9600, "$96.00", 8700, "$87.00", "90.6%"]
    for chart in revenue.CSV_CHARTS:
        header, rows = revenue.csv_table(history=history, chart=chart, currency="USD")
        assert all(len(row) == len(header) for row in rows)
    with pytest.raises(ValueError, match="unknown chart"):
        revenue.csv_table(history=history, chart="nope", currency="USD")


def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_prefixed(three_months):
    Subscription.objects.filter(cancellation_reason="too_expensive").update(
        cancellation_reason="=HYPERLINK(1)"
    )
    with clock.frozen(AS_OF):
        history = revenue.revenue_history(months=3)
    header, rows = revenue.csv_table(history=history, chart="reasons", currency="USD")
    parsed = read_csv(header, rows)
    assert parsed[0] == ["reason", "label", "cancellations"]
    assert ["'=HYPERLINK(1)", "'=HYPERLINK(1)", "1"] in parsed
    for text in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert revenue.csv_safe(text) == "'" + text
    assert revenue.csv_safe("Pro") == "Pro"
    assert revenue.csv_safe(-5) == -5


customers_mrr = st.dictionaries(
    st.integers(min_value=1, max_value=30),
    st.fractions(min_value=Fraction(1, 12), max_value=100_000, max_denominator=36),
    max_size=20,
)


@given(before=customers_mrr, after=customers_mrr)
def test_movements_explain_the_change_of_mrr_and_of_paying_customers(before, after):
    month = revenue.month_figures(
        month=dt.date(2026, 2, 1), at=AS_OF, currency="USD", before=before, after=after
    )
    assert month.start_customers - month.churned_customers + month.new_customers == len(after)
    parts = month.new + month.expansion - month.contraction - month.churned
    # Five figures rounded once each: they explain net new MRR to within two minor units, and
    # exactly when every share is whole.
    assert abs(parts - month.net_new) <= 2
    assert month.mrr - month.start_mrr - month.net_new in (-1, 0, 1)
    if all(mrr.denominator == 1 for mrr in [*before.values(), *after.values()]):
        assert parts == month.net_new == month.mrr - month.start_mrr
    assert month.lost == reports.round_half_up(
        sum((before[c] for c in before if c not in after), Fraction(0))
        + sum(
            (before[c] - after[c] for c in before if c in after and after[c] < before[c]),
            Fraction(0),
        )
    )
