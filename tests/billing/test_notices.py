"""Scheduled notices: derived from the database at a moment, each sent once per event."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connection

from tests import concurrency
from tests.billing.conftest import CARD_OK, add_card, new_key
from tests.notifications.emails import assert_transactional, html_of, sent
from tollgate.accounts.services import account_marketing_opt_out, marketing_unsubscribe_token
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.billing.notices import notices_send
from tollgate.billing.tasks import billing_notices_task
from tollgate.core import clock
from tollgate.core.models import OutboxMessage
from tollgate.core.outbox import outbox_sweep

SITE = "https://acme.test"
START = dt.datetime(2025, 1, 10, 9, tzinfo=dt.UTC)
TRIAL_END = dt.datetime(2025, 1, 24, 9, tzinfo=dt.UTC)  # Starter has a 14-day trial
YEAR_END = dt.datetime(2026, 1, 10, 9, tzinfo=dt.UTC)
MONTH_END = dt.datetime(2025, 2, 10, 9, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _acme(settings):
    settings.SITE_URL = SITE
    settings.TOLLGATE_BRAND = {**settings.TOLLGATE_BRAND, "name": "Acme"}


@pytest.fixture
def delivered(django_capture_on_commit_callbacks):
    """Wraps work whose emails the worker delivers after its commits."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def start(customer, price, *, trial=True):
    with clock.frozen(START):
        return services.subscription_start(
            customer=customer, price=price, trial=trial, idempotency_key=new_key()
        )


def cancel_now(subscription, at=START):
    with clock.frozen(at):
        return services.subscription_cancel(
            subscription=subscription, at_period_end=False, idempotency_key=new_key()
        )


def add_card_expiring(customer, *, month, year):
    with clock.frozen(START):
        session = services.payment_method_setup_start(customer=customer, return_url=f"{SITE}/b/")
        SandboxGateway().setup_submit(
            session_reference=session.reference, number=CARD_OK, exp_month=month, exp_year=year
        )
        return services.payment_method_attach(customer=customer, setup_reference=session.reference)


def notices_at(moment, delivered=None, **options):
    with clock.frozen(moment):
        if delivered is None:
            return notices_send(now=moment, **options)
        with delivered():
            return notices_send(now=moment, **options)


def notice_mail(prefix):
    return [m for m in mail.outbox if m.subject.startswith(prefix)]


# --- Trial ending -------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_trial_ending_is_sent_three_days_before_the_trial_ends_once(customer, price, delivered):
    start(customer, price("starter"))
    before = TRIAL_END - dt.timedelta(days=3, seconds=1)
    assert notices_at(before, delivered).sent == 0
    result = notices_at(TRIAL_END - dt.timedelta(days=3), delivered)
    assert (result.trial_ending, result.sent) == (1, 1)
    message = sent("Your Starter trial ends on January 24, 2025")
    for body in (message.body, html_of(message)):
        assert "$9.00" in body
        assert f"{SITE}/billing/payment-method/" in body  # no card yet: add one
    assert_transactional(message)
    for hours in (1, 2, 30):
        assert notices_at(TRIAL_END - dt.timedelta(days=3) + dt.timedelta(hours=hours)).sent == 0
    assert len(notice_mail("Your Starter trial ends")) == 1
    event = AuditEvent.objects.get(action="billing.notice_sent")
    assert event.details == {"notice": "trial_ending"}


@pytest.mark.django_db
def test_trial_ending_with_a_card_names_the_card_that_will_be_charged(customer, price, delivered):
    card = add_card(customer, CARD_OK)
    start(customer, price("starter"))
    notices_at(TRIAL_END - dt.timedelta(days=2), delivered)
    message = sent("Your Starter trial ends")
    for body in (message.body, html_of(message)):
        assert str(card) in body
        assert "$9.00" in body
        assert "per month" in body


@pytest.mark.django_db
def test_no_trial_ending_for_an_ended_or_cancelling_trial(make_customer, price):
    ended = start(make_customer("ended@example.org"), price("starter"))
    cancel_now(ended)
    cancelling = start(make_customer("leaving@example.org"), price("starter"))
    with clock.frozen(START):
        services.subscription_cancel(
            subscription=cancelling, at_period_end=True, idempotency_key=new_key()
        )
    assert notices_at(TRIAL_END - dt.timedelta(days=1)).sent == 0


# --- Upcoming annual renewal ----------------------------------------------------------------------------
@pytest.mark.django_db
def test_an_annual_renewal_is_announced_seven_days_before_once(customer, price, delivered):
    card = add_card(customer, CARD_OK)
    start(customer, price("starter", "year"), trial=False)
    assert notices_at(YEAR_END - dt.timedelta(days=7, seconds=1), delivered).sent == 0
    assert notices_at(YEAR_END - dt.timedelta(days=7), delivered).renewal_upcoming == 1
    assert notices_at(YEAR_END - dt.timedelta(days=1), delivered).sent == 0
    message = sent("Your Starter subscription renews on January 10, 2026")
    for body in (message.body, html_of(message)):
        assert "$90.00" in body
        assert str(card) in body
        assert f"{SITE}/billing/" in body
    assert_transactional(message)


@pytest.mark.django_db
def test_no_renewal_notice_for_a_monthly_subscription(customer, price):
    add_card(customer, CARD_OK)
    start(customer, price("pro"))
    for days in (7, 3, 1):
        assert notices_at(MONTH_END - dt.timedelta(days=days)).sent == 0


@pytest.mark.django_db
def test_no_renewal_notice_for_an_ended_or_cancelling_annual_subscription(make_customer, price):
    ended = make_customer("ended@example.org")
    add_card(ended, CARD_OK)
    cancel_now(start(ended, price("starter", "year"), trial=False))
    leaving = make_customer("leaving@example.org")
    add_card(leaving, CARD_OK)
    subscription = start(leaving, price("starter", "year"), trial=False)
    with clock.frozen(START):
        services.subscription_cancel(
            subscription=subscription, at_period_end=True, idempotency_key=new_key()
        )
    assert notices_at(YEAR_END - dt.timedelta(days=3)).renewal_upcoming == 0


# --- Card expiring -------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_default_card_of_a_live_subscription_is_flagged_the_month_before_it_expires(
    customer, price, delivered
):
    card = add_card_expiring(customer, month=3, year=2025)
    start(customer, price("pro"))
    assert notices_at(dt.datetime(2025, 1, 31, 23, tzinfo=dt.UTC), delivered).sent == 0
    result = notices_at(dt.datetime(2025, 2, 1, 0, tzinfo=dt.UTC), delivered)
    assert result.card_expiring == 1
    assert notices_at(dt.datetime(2025, 2, 20, tzinfo=dt.UTC), delivered).sent == 0
    message = sent(f"Your {card} expires at the end of March 2025")
    for body in (message.body, html_of(message)):
        assert "March 2025" in body
        assert "Pro" in body
        assert f"{SITE}/billing/payment-method/" in body
    assert_transactional(message)


@pytest.mark.django_db
def test_no_card_notice_for_a_replaced_card_a_free_plan_or_without_a_live_subscription(
    make_customer, price
):
    replaced = make_customer("replaced@example.org")
    add_card_expiring(replaced, month=3, year=2025)
    start(replaced, price("pro"))
    add_card(replaced, CARD_OK)  # the new default card expires in 2099
    ended = make_customer("ended@example.org")
    add_card_expiring(ended, month=3, year=2025)
    cancel_now(start(ended, price("pro")))
    free = make_customer("free@example.org")
    add_card_expiring(free, month=3, year=2025)
    start(free, price("free"))
    assert notices_at(dt.datetime(2025, 2, 10, tzinfo=dt.UTC)).card_expiring == 0


@pytest.mark.django_db
def test_an_account_that_unsubscribed_still_gets_the_card_notice(customer, price, delivered):
    add_card_expiring(customer, month=2, year=2025)
    start(customer, price("pro"))
    account_marketing_opt_out(token=marketing_unsubscribe_token(user=customer.user))
    assert notices_at(dt.datetime(2025, 1, 20, tzinfo=dt.UTC), delivered).card_expiring == 1


# --- Win-back ------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_win_back_comes_fourteen_days_after_a_cancellation_with_a_one_click_unsubscribe(
    customer, price, delivered, client
):
    add_card(customer, CARD_OK)
    cancel_now(start(customer, price("pro")))
    assert notices_at(START + dt.timedelta(days=14, seconds=-1), delivered).sent == 0
    assert notices_at(START + dt.timedelta(days=14), delivered).win_back == 1
    assert notices_at(START + dt.timedelta(days=15), delivered).sent == 0
    message = sent("We'd love to have you back at Acme")
    html = html_of(message)
    unsubscribe = message.extra_headers["List-Unsubscribe"]
    assert unsubscribe.startswith(f"<{SITE}/email/unsubscribe/")
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = unsubscribe[1:-1]
    assert link in message.body
    assert f'href="{link}"' in html
    assert customer.user.public_id not in link
    assert "January 10, 2025" in message.body
    assert f"{SITE}/pricing/" in message.body
    # The one-click POST a mail provider sends: no session, no CSRF token.
    path = link.removeprefix(SITE)
    response = client.post(path, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    customer.user.refresh_from_db()
    assert customer.user.marketing_opt_out_at is not None


@pytest.mark.django_db
def test_no_win_back_for_an_account_that_unsubscribed(customer, price):
    cancel_now(start(customer, price("starter")))
    account_marketing_opt_out(token=marketing_unsubscribe_token(user=customer.user))
    assert notices_at(START + dt.timedelta(days=14, hours=1)).win_back == 0


@pytest.mark.django_db
def test_no_win_back_for_a_customer_who_came_back_or_for_an_old_cancellation(make_customer, price):
    returned = make_customer("back@example.org")
    cancel_now(start(returned, price("starter")))
    with clock.frozen(START + dt.timedelta(days=2)):
        services.subscription_start(
            customer=returned, price=price("starter"), idempotency_key=new_key()
        )
    old = make_customer("old@example.org")
    cancel_now(start(old, price("starter")), at=START - dt.timedelta(days=30))
    assert notices_at(START + dt.timedelta(days=14, hours=1)).win_back == 0


# --- Once per event ------------------------------------------------------------------------------------
def _every_notice(make_customer, price, count=1):
    """``count`` customers of each kind of notice, all due at ``NOTICES_DUE``."""
    for index in range(count):
        start(make_customer(f"trial{index}@example.org"), price("starter"))
        annual = make_customer(f"annual{index}@example.org")
        add_card_expiring(annual, month=2, year=2026)
        start(annual, price("starter", "year"), trial=False)
        cancel_now(start(make_customer(f"gone{index}@example.org"), price("starter")))
    return 4 * count  # trial, renewal, card (annual's card expires next month), win-back


NOTICES_DUE = dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC)


def _move_trials_and_cancellations_to(moment):
    """Trials ending and cancellations near ``moment`` (the annual renewal is already there)."""
    from tollgate.billing.models import Subscription

    for subscription in Subscription.objects.filter(status="trialing"):
        end = moment + dt.timedelta(days=1)
        Subscription.objects.filter(pk=subscription.pk).update(
            trial_end=end, current_period_end=end, billing_anchor=end
        )
    Subscription.objects.filter(status="canceled").update(
        ended_at=moment - dt.timedelta(days=14, hours=1)
    )


@pytest.mark.django_db
def test_each_notice_is_sent_once_across_runs_and_a_restart_that_lost_its_deliveries(
    make_customer, price, delivered
):
    events = _every_notice(make_customer, price)
    _move_trials_and_cancellations_to(NOTICES_DUE)
    with clock.frozen(NOTICES_DUE):
        outbox_sweep()  # the emails of the set-up (confirmations, cancellations)
    mail.outbox = []
    # The worker commits the notices and dies before delivering any (no on-commit callback runs).
    first = notices_at(NOTICES_DUE)
    assert (first.trial_ending, first.renewal_upcoming, first.card_expiring, first.win_back) == (
        1,
        1,
        1,
        1,
    )
    assert mail.outbox == []
    # Restarted, it runs again: nothing new is queued; the sweep delivers what was queued, once.
    assert notices_at(NOTICES_DUE + dt.timedelta(minutes=5), delivered).sent == 0
    with clock.frozen(NOTICES_DUE + dt.timedelta(minutes=5)):
        assert outbox_sweep() == events
        assert outbox_sweep() == 0
    assert notices_at(NOTICES_DUE + dt.timedelta(hours=1), delivered).sent == 0
    assert len(mail.outbox) == events
    assert len({m.subject for m in mail.outbox}) == events
    assert AuditEvent.objects.filter(action="billing.notice_sent").count() == events


@pytest.mark.django_db
def test_notices_work_in_small_batches(make_customer, price, delivered):
    events = _every_notice(make_customer, price, count=3)
    _move_trials_and_cancellations_to(NOTICES_DUE)
    assert notices_at(NOTICES_DUE, delivered, batch_size=2).sent == events
    assert notices_at(NOTICES_DUE, delivered, batch_size=2).sent == 0
    assert len(mail.outbox) == events


@pytest.mark.django_db
def test_the_hourly_task_and_billing_run_send_the_notices_due(customer, price, capsys, delivered):
    start(customer, price("starter"))
    with delivered(), clock.frozen(TRIAL_END - dt.timedelta(days=2)):
        billing_notices_task.call_local()
    assert len(notice_mail("Your Starter trial ends")) == 1
    call_command("billing_run", "--until", (TRIAL_END - dt.timedelta(days=1)).isoformat())
    assert "notices: trial_ending=0" in capsys.readouterr().out
    assert OutboxMessage.objects.filter(dedupe_key__startswith="billing_trial_ending:").count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="row locks under real concurrency need PostgreSQL (SQLite serializes all writers)",
)
def test_workers_running_the_notices_at_once_send_each_exactly_once(make_customer, catalog, price):
    events = _every_notice(make_customer, price, count=3)
    _move_trials_and_cancellations_to(NOTICES_DUE)
    mail.outbox = []

    def run(index: int):
        with clock.frozen(NOTICES_DUE):
            return notices_send(now=NOTICES_DUE, batch_size=2)

    outcomes = concurrency.race(run, 4, timeout=120)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert sum(o.sent for o in outcomes) == events
    assert sum(o.failed for o in outcomes) == 0
    keys = list(
        OutboxMessage.objects.filter(
            kind="email", dedupe_key__regex=r"^billing_(trial|ren|card|win)"
        ).values_list("dedupe_key", flat=True)
    )
    assert len(keys) == len(set(keys)) == events
    assert AuditEvent.objects.filter(action="billing.notice_sent").count() == events
    # Each notice was delivered after its commit, once; nothing is left for the sweep.
    with clock.frozen(NOTICES_DUE):
        assert outbox_sweep() == 0
    assert len(mail.outbox) == events
    assert len({(tuple(m.to), m.subject) for m in mail.outbox}) == events
