"""Revenue figures built from real subscriptions, payments and the billing clock: MRR normalised
to a month with one rounding per figure, subscriptions by plan, trials converting, churn, failed
payments and the amount at risk; and the revenue page with its SVG charts."""

from __future__ import annotations

import datetime as dt
import re
from fractions import Fraction

import pytest

from tests.billing.conftest import CARD_DECLINES_AFTER_ATTACH, CARD_OK, add_card, new_key
from tollgate.billing import reports, services
from tollgate.billing.clock import billing_run
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load
from tollgate.core import clock
from tollgate.core.money import Money

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)

EXTRA = {
    "products": [
        {
            "code": "extras",
            "name": "Extras",
            "plans": [
                {
                    "code": "team",
                    "name": "Team",
                    "prices": [{"amount": 1000, "currency": "USD", "interval": "year"}],
                },
                {
                    "code": "quarterly",
                    "name": "Quarterly",
                    "prices": [
                        {
                            "amount": 2500,
                            "currency": "USD",
                            "interval": "month",
                            "interval_count": 3,
                        }
                    ],
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


@pytest.fixture
def subscribe(catalog, make_customer):
    catalog_load(document=EXTRA)
    made = iter(range(1000))

    def start(plan: str, *, card: str | None = CARD_OK, trial: bool = False, at=T0):
        customer = make_customer(f"c{next(made)}@example.org")
        if card is not None:
            add_card(customer, card)
        # The monthly price where a plan has several ("month" sorts before "year").
        chosen = Price.objects.filter(plan__code=plan, active=True).order_by("interval").first()
        with clock.frozen(at):
            return services.subscription_start(
                customer=customer, price=chosen, trial=trial, idempotency_key=new_key()
            )

    return start


def cancel_now(subscription, at):
    with clock.frozen(at):
        services.subscription_cancel(
            subscription=subscription, at_period_end=False, idempotency_key=new_key()
        )


def test_monthly_shares_are_exact_and_rounded_half_up_once():
    assert reports.monthly_share(amount=1000, interval="year", interval_count=1) == Fraction(
        1000, 12
    )
    assert reports.monthly_share(amount=2500, interval="month", interval_count=3) == Fraction(
        2500, 3
    )
    assert reports.monthly_share(amount=9000, interval="year", interval_count=2) == 375
    assert [reports.round_half_up(Fraction(n, 2)) for n in (1, 3, 5)] == [1, 2, 3]
    assert reports.round_half_up(Fraction(1, 3)) == 0
    assert reports.round_half_up(Fraction(2, 3)) == 1


def test_mrr_normalises_yearly_and_multi_month_prices_per_currency(subscribe):
    for _ in range(3):
        subscribe("team")  # 1000 a year: 83 1/3 a month each
    subscribe("quarterly")  # 2500 every three months: 833 1/3
    subscribe("pro")  # 2900 a month
    subscribe("euro")  # 1999 EUR a month
    subscribe("starter", trial=True)  # trialing: not paying yet
    cancel_now(subscribe("pro"), T0 + days(1))  # ended: no longer recurring
    subscribe("pro", card=CARD_DECLINES_AFTER_ATTACH)  # incomplete: never paid

    with clock.frozen(T0 + days(2)):
        overview = reports.revenue_overview()
    # 3 x 1000/12 + 2500/3 + 2900 = 3983 1/3, rounded once; never 3 x 83 + 833 + 2900 = 3982.
    assert overview.mrr == [Money(1999, "EUR"), Money(3983, "USD")]
    assert {(line.plan, line.subscriptions, line.mrr) for line in overview.mrr_by_plan} == {
        ("Team", 3, Money(250, "USD")),
        ("Quarterly", 1, Money(833, "USD")),
        ("Pro", 1, Money(2900, "USD")),
        ("Euro", 1, Money(1999, "EUR")),
    }
    assert overview.paying_subscriptions == 6
    assert {
        (line.plan, line.trialing, line.active, line.past_due) for line in overview.by_plan
    } == {
        ("Team", 0, 3, 0),
        ("Quarterly", 0, 1, 0),
        ("Pro", 0, 1, 0),
        ("Euro", 0, 1, 0),
        ("Starter", 1, 0, 0),
    }


def test_a_past_due_subscription_still_counts_towards_mrr_and_its_invoice_is_at_risk(subscribe):
    subscription = subscribe("starter", card=CARD_DECLINES_AFTER_ATTACH, trial=True)
    with clock.frozen(subscription.trial_end):
        billing_run()
    subscription.refresh_from_db()
    assert subscription.status == "past_due"
    with clock.frozen(subscription.trial_end + days(1)):
        overview = reports.revenue_overview()
    assert overview.mrr == [Money(900, "USD")]
    assert overview.at_risk == [Money(900, "USD")]
    assert overview.at_risk_invoices == 1
    assert overview.failed_payments == 1
    assert overview.trials_ended == reports.Rate(part=0, whole=1)


def test_trials_converting_counts_the_trials_that_ended_in_the_window_and_were_paid(subscribe):
    paid = subscribe("starter", trial=True)
    declined = subscribe("starter", card=CARD_DECLINES_AFTER_ATTACH, trial=True)
    without_card = subscribe("starter", card=None, trial=True)
    subscribe("starter", trial=True, at=T0 + days(10))  # still in its trial at the report
    old = subscribe("starter", trial=True, at=T0 - days(40))  # ended before the window
    with clock.frozen(old.trial_end):
        billing_run()
    with clock.frozen(paid.trial_end):
        billing_run()
    for subscription in (paid, declined, without_card):
        subscription.refresh_from_db()
    assert (paid.status, declined.status) == ("active", "past_due")
    assert without_card.status in ("canceled", "incomplete")

    with clock.frozen(T0 + days(20)):
        overview = reports.revenue_overview()
    assert overview.trials_ended == reports.Rate(part=1, whole=3)
    assert overview.trials_ended.percent == "33.3%"
    assert overview.trials_running == 1


def test_churn_counts_paying_subscriptions_that_ended_in_the_last_30_days(subscribe):
    staying = [subscribe("pro") for _ in range(2)]
    leaving = subscribe("pro")
    cancel_now(leaving, T0 + days(20))
    short_lived = subscribe("pro", at=T0 + days(10))
    cancel_now(short_lived, T0 + days(12))
    left_long_ago = subscribe("pro", at=T0 - days(60))
    cancel_now(left_long_ago, T0 - days(50))
    unpaid_trial = subscribe("starter", trial=True, at=T0 + days(1))
    cancel_now(unpaid_trial, T0 + days(3))  # a trial that never paid is not churn

    with clock.frozen(T0 + days(35)):
        overview = reports.revenue_overview()
    assert overview.churned == 2
    assert overview.churned_mrr == [Money(5800, "USD")]
    # Of the three paying at the window's start (T0 + 5 days), one ended.
    assert overview.churn == reports.Rate(part=1, whole=3)
    assert overview.churn.percent == "33.3%"
    assert len(staying) == 2


def test_failed_payments_are_counted_per_day_within_the_window(subscribe):
    subscribe("pro", card=CARD_DECLINES_AFTER_ATTACH, at=T0 - days(31))  # before the window
    subscribe("pro", card=CARD_DECLINES_AFTER_ATTACH, at=T0 + days(3))
    subscribe(
        "pro",
        card=CARD_DECLINES_AFTER_ATTACH,
        at=T0
        + days(
            3,
        )
        + dt.timedelta(hours=5),
    )
    subscribe("pro", card=CARD_DECLINES_AFTER_ATTACH, at=T0 + days(7))
    with clock.frozen(T0 + days(10)):
        overview = reports.revenue_overview()
    assert overview.failed_payments == 3
    assert len(overview.failed_by_day) == 31
    by_day = {day.day: day.count for day in overview.failed_by_day if day.count}
    assert by_day == {dt.date(2026, 3, 4): 2, dt.date(2026, 3, 8): 1}
    assert overview.at_risk == [Money(2900 * 4, "USD")]


def test_the_revenue_page_shows_todays_mrr_next_to_its_history(staff_client, subscribe):
    subscribe("pro")
    subscribe("team")
    subscribe("pro", card=CARD_DECLINES_AFTER_ATTACH)
    with clock.frozen(T0 + days(2)):
        response = staff_client.get("/staff/revenue/")
    assert response.status_code == 200
    page = response.text
    assert page.count("<svg") == 5  # MRR, movements, churn, retention (USD); reasons
    svgs = "".join(re.findall(r"<svg.*?</svg>", page, flags=re.S))
    assert "style=" not in svgs
    assert "<script" not in page
    assert 'role="img"' in svgs
    assert "$29.83" in page  # 2900 + 1000/12, rounded once
