import datetime as dt

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from tests.billing.conftest import (
    CARD_DECLINES_AFTER_ATTACH,
    CARD_INSUFFICIENT_FUNDS,
    CARD_OK,
    CARD_STOLEN,
    CARD_TIMES_OUT,
    add_card,
    new_key,
)
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Invoice, LedgerTransaction, PaymentAttempt, Subscription
from tollgate.billing.states import InvoiceStatus, PaymentStatus, SubscriptionStatus
from tollgate.billing.steps.payments import payment_begin_locked
from tollgate.billing.tasks import billing_clock_task
from tollgate.core import clock

pytestmark = pytest.mark.django_db
START = dt.datetime(2025, 1, 31, 10, tzinfo=dt.UTC)
UTC = dt.UTC


def at(*args):
    return dt.datetime(*args, tzinfo=UTC)


def run(moment, **options):
    with clock.frozen(moment):
        return billing_run(**options)


@pytest.fixture
def active(customer, price):
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        return services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )


def cycle_invoices(subscription):
    return list(
        Invoice.objects.filter(
            subscription=subscription, billing_reason="subscription_cycle"
        ).order_by("period_start")
    )


def test_nothing_is_due_before_the_period_ends(active):
    result = run(at(2025, 2, 28, 9, 59))
    assert result.handled == 0
    assert cycle_invoices(active) == []


def test_a_renewal_invoices_the_next_period_and_charges_it_off_session_once(
    active, customer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        result = run(at(2025, 2, 28, 10))
    assert (result.renewed, result.charged) == (1, 1)
    active.refresh_from_db()
    assert (active.current_period_start, active.current_period_end) == (
        at(2025, 2, 28, 10),
        at(2025, 3, 31, 10),
    )
    [invoice] = cycle_invoices(active)
    assert (invoice.status, invoice.number, invoice.next_payment_attempt_at) == (
        "paid",
        f"{customer.invoice_prefix}-0002",
        None,
    )
    payment = invoice.payments.get()
    assert payment.off_session is True
    assert mail.outbox[-1].subject.startswith(f"Receipt for invoice {invoice.number}")
    assert run(at(2025, 2, 28, 11)).handled == 0  # running again finds nothing to do
    assert ledger_check().ok


def test_after_downtime_every_missed_period_is_invoiced_in_order(active):
    result = run(at(2025, 5, 1))
    assert result.renewed == 3
    assert [i.period_start for i in cycle_invoices(active)] == [
        at(2025, 2, 28, 10),
        at(2025, 3, 31, 10),
        at(2025, 4, 30, 10),
    ]
    assert all(i.status == "paid" for i in cycle_invoices(active))
    assert ledger_check().ok


def test_until_processes_work_due_by_then(active):
    with clock.frozen(at(2025, 2, 1)):
        result = billing_run(until=at(2025, 3, 1))
    assert result.renewed == 1


def test_a_cancellation_at_period_end_ends_it_then_without_an_invoice(active):
    services.subscription_cancel(subscription=active, at_period_end=True, idempotency_key=new_key())
    result = run(at(2025, 3, 1))
    assert result.ended == 1
    active.refresh_from_db()
    assert (active.status, active.ended_at, active.cancel_at_period_end) == (
        "canceled",
        at(2025, 2, 28, 10),
        False,
    )
    assert cycle_invoices(active) == []


def test_a_trial_with_a_card_becomes_active_and_pays_at_its_end(customer, price):
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        trial = services.subscription_start(
            customer=customer, price=price("starter"), idempotency_key=new_key()
        )
    run(START + dt.timedelta(days=14))
    trial.refresh_from_db()
    assert trial.status == SubscriptionStatus.ACTIVE
    assert (trial.current_period_start, trial.current_period_end) == (
        at(2025, 2, 14, 10),
        at(2025, 3, 14, 10),
    )
    [invoice] = cycle_invoices(trial)
    assert (invoice.status, invoice.total) == ("paid", 900)


def test_a_trial_without_a_card_ends_by_default(customer, price):
    with clock.frozen(START):
        trial = services.subscription_start(
            customer=customer, price=price("starter"), idempotency_key=new_key()
        )
    assert run(START + dt.timedelta(days=15)).ended == 1
    trial.refresh_from_db()
    assert (trial.status, trial.ended_at) == ("canceled", START + dt.timedelta(days=14))


def test_a_trial_without_a_card_can_wait_incomplete_for_one_then_expire(settings, customer, price):
    settings.BILLING_TRIAL_END_WITHOUT_CARD = "incomplete"
    with clock.frozen(START):
        trial = services.subscription_start(
            customer=customer, price=price("starter"), idempotency_key=new_key()
        )
    trial_end = START + dt.timedelta(days=14)
    run(trial_end)
    trial.refresh_from_db()
    assert trial.status == SubscriptionStatus.INCOMPLETE
    [invoice] = cycle_invoices(trial)
    assert (invoice.status, invoice.next_payment_attempt_at) == ("open", None)
    result = run(trial_end + dt.timedelta(hours=24))
    assert result.expired == 1
    trial.refresh_from_db()
    invoice.refresh_from_db()
    assert (trial.status, invoice.status) == ("incomplete_expired", "void")
    assert LedgerTransaction.objects.filter(invoice=invoice, kind="invoice_voided").exists()
    assert ledger_check().ok


def test_an_incomplete_trial_is_activated_by_adding_a_card(settings, customer, price):
    settings.BILLING_TRIAL_END_WITHOUT_CARD = "incomplete"
    with clock.frozen(START):
        trial = services.subscription_start(
            customer=customer, price=price("starter"), idempotency_key=new_key()
        )
    run(START + dt.timedelta(days=14))
    with clock.frozen(START + dt.timedelta(days=14, hours=2)):
        add_card(customer, CARD_OK)
    trial.refresh_from_db()
    assert trial.status == SubscriptionStatus.ACTIVE


def test_an_unpaid_first_invoice_expires_the_subscription_after_23_hours(customer, price):
    add_card(customer, CARD_INSUFFICIENT_FUNDS)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
    assert run(START + dt.timedelta(hours=22)).expired == 0
    assert run(START + dt.timedelta(hours=23)).expired == 1
    subscription.refresh_from_db()
    assert (subscription.status, subscription.ended_at) == (
        "incomplete_expired",
        START + dt.timedelta(hours=23),
    )
    assert Invoice.objects.get().status == InvoiceStatus.VOID
    assert ledger_check().ok


def test_dunning_retries_on_schedule_then_cancels_and_writes_off(
    active, customer, django_capture_on_commit_callbacks
):
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    renewal = at(2025, 2, 28, 10)
    with django_capture_on_commit_callbacks(execute=True):
        run(renewal)
    active.refresh_from_db()
    assert active.status == SubscriptionStatus.PAST_DUE
    [invoice] = cycle_invoices(active)
    assert invoice.next_payment_attempt_at == renewal + dt.timedelta(days=1)
    assert "We will try again on March 1, 2025" in mail.outbox[-1].body

    retries = []
    for day in (1, 3, 5):
        assert run(renewal + dt.timedelta(days=day) - dt.timedelta(minutes=1)).charged == 0
        assert run(renewal + dt.timedelta(days=day)).charged == 1
        invoice.refresh_from_db()
        retries.append(invoice.next_payment_attempt_at - renewal)
    assert retries == [dt.timedelta(days=3), dt.timedelta(days=5), dt.timedelta(days=7)]

    with django_capture_on_commit_callbacks(execute=True):
        run(renewal + dt.timedelta(days=7))
    active.refresh_from_db()
    invoice.refresh_from_db()
    assert (active.status, invoice.status, invoice.next_payment_attempt_at) == (
        "canceled",
        "uncollectible",
        None,
    )
    assert invoice.payments.filter(status="failed").count() == 5
    assert "your subscription has been canceled" in mail.outbox[-1].body
    assert LedgerTransaction.objects.filter(invoice=invoice, kind="invoice_written_off").exists()
    assert ledger_check().ok
    assert run(renewal + dt.timedelta(days=30)).handled == 0


def test_exhausted_retries_can_leave_the_subscription_unpaid_until_a_new_card(
    settings, active, customer
):
    settings.BILLING_DUNNING_RETRY_DAYS = [1]
    settings.BILLING_DUNNING_FINAL_STATUS = "unpaid"
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    run(at(2025, 2, 28, 10))
    run(at(2025, 3, 1, 10))
    active.refresh_from_db()
    [invoice] = cycle_invoices(active)
    assert (active.status, invoice.status, invoice.next_payment_attempt_at) == (
        "unpaid",
        "open",
        None,
    )
    # Unpaid subscriptions do not renew; a new card pays the open invoice and reactivates it.
    assert run(at(2025, 4, 1)).renewed == 0
    with clock.frozen(at(2025, 4, 1)):
        add_card(customer, CARD_OK)
    active.refresh_from_db()
    assert active.status == SubscriptionStatus.ACTIVE
    assert run(at(2025, 4, 1)).renewed == 1  # the period that passed while unpaid is billed now


def test_a_hard_decline_stops_the_retries_at_once(active, customer):
    add_card(customer, CARD_STOLEN)
    run(at(2025, 2, 28, 10))
    active.refresh_from_db()
    assert active.status == SubscriptionStatus.CANCELED
    assert cycle_invoices(active)[0].status == InvoiceStatus.UNCOLLECTIBLE


def test_a_new_card_during_dunning_pays_at_once(active, customer):
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    run(at(2025, 2, 28, 10))
    with clock.frozen(at(2025, 2, 28, 12)):
        add_card(customer, CARD_OK)
    active.refresh_from_db()
    [invoice] = cycle_invoices(active)
    assert (active.status, invoice.status, invoice.next_payment_attempt_at) == (
        "active",
        "paid",
        None,
    )


def test_an_unknown_renewal_charge_is_reconciled_by_a_later_run(active, customer):
    add_card(customer, CARD_TIMES_OUT)
    run(at(2025, 2, 28, 10))
    [invoice] = cycle_invoices(active)
    assert invoice.payments.get().status == PaymentStatus.UNKNOWN
    assert run(at(2025, 2, 28, 10, 0, 30)).reconciled == 0  # too fresh to ask about
    result = run(at(2025, 2, 28, 10, 2))
    assert (result.reconciled, result.charged) == (1, 0)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


def test_a_run_first_sends_again_what_a_dead_worker_never_sent(active, customer):
    from django.db import transaction

    from tollgate.billing.gateways.sandbox.models import SandboxCharge
    from tollgate.billing.locks import lock_invoice

    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    renewal = at(2025, 2, 28, 10)
    run(renewal)  # declined: past due, first retry a day later
    [invoice] = cycle_invoices(active)
    retry_at = renewal + dt.timedelta(days=1)
    with clock.frozen(retry_at), transaction.atomic():
        # A worker claims the retry, commits its pending attempt, and dies before sending it.
        lost = payment_begin_locked(
            locks=lock_invoice(invoice), gateway_name="sandbox", off_session=True, actor=None
        ).payment
    assert run(retry_at + dt.timedelta(seconds=30)).handled == 0  # in flight, perhaps: left alone
    result = run(retry_at + dt.timedelta(minutes=2))
    lost.refresh_from_db()
    invoice.refresh_from_db()
    assert (result.reconciled, result.charged) == (1, 0)
    assert (lost.status, lost.decline_code) == ("failed", "generic_decline")  # sent, and declined
    assert SandboxCharge.objects.filter(idempotency_key=lost.idempotency_key).count() == 1
    assert invoice.next_payment_attempt_at == renewal + dt.timedelta(days=3)  # the second retry


def test_a_failing_item_is_skipped_and_reported_without_stopping_the_others(
    active, make_customer, price
):
    other = make_customer("other@example.org")
    add_card(other, CARD_OK)
    with clock.frozen(START):
        services.subscription_start(customer=other, price=price("pro"), idempotency_key=new_key())
    # Corrupt one subscription's schedule so its renewal fails (it has no valid next period).
    Subscription.objects.filter(pk=active.pk).update(billing_anchor=at(2030, 1, 1))
    result = run(at(2025, 3, 1))
    assert (result.renewed, result.failed) == (1, 1)


def test_the_command_reports_what_it_did_and_fails_on_failed_items(active, capsys):
    with clock.frozen(at(2025, 3, 1)):
        call_command("billing_run")
    assert "renewed=1 ended=0 expired=0 charged=1 reconciled=0 failed=0" in capsys.readouterr().out
    with clock.frozen(at(2025, 2, 1)):
        call_command("billing_run", "--until", "2025-04-01T00:00:00")
    assert "renewed=1" in capsys.readouterr().out
    with pytest.raises(CommandError, match="ISO 8601"):
        call_command("billing_run", "--until", "next tuesday")
    Subscription.objects.filter(pk=active.pk).update(billing_anchor=at(2030, 1, 1))
    with clock.frozen(at(2025, 6, 1)), pytest.raises(CommandError, match="1 items failed"):
        call_command("billing_run", "--until", "2025-06-01T00:00:00+00:00")


def test_the_periodic_task_runs_the_clock(active):
    with clock.frozen(at(2025, 3, 1)):
        billing_clock_task.call_local()
    assert len(cycle_invoices(active)) == 1


def test_a_renewal_without_a_card_fails_softly_and_dunning_waits_for_one(
    active, customer, django_capture_on_commit_callbacks
):
    from tollgate.billing.models import PaymentMethod

    services.payment_method_detach(payment_method=PaymentMethod.objects.get(customer=customer))
    with django_capture_on_commit_callbacks(execute=True):
        result = run(at(2025, 2, 28, 10))
    assert (result.renewed, result.charged) == (1, 0)
    [invoice] = cycle_invoices(active)
    failed = invoice.payments.get()
    assert (failed.status, failed.decline_code, failed.payment_method) == (
        "failed",
        "no_payment_method",
        None,
    )
    active.refresh_from_db()
    assert active.status == SubscriptionStatus.PAST_DUE
    assert "We will try again on March 1, 2025" in mail.outbox[-1].body
    with clock.frozen(at(2025, 2, 28, 12)):
        add_card(customer, CARD_OK)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


def test_a_pending_refund_is_reconciled_by_the_clock(active, staff):
    from tollgate.billing.gateways.base import RefundRequest
    from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
    from tollgate.billing.models import Refund

    payment = PaymentAttempt.objects.get()
    # A crash after the refund was reserved and sent, before its outcome was recorded.
    PaymentAttempt.objects.filter(pk=payment.pk).update(amount_refunded=500)
    refund = Refund.objects.create(
        payment=payment,
        amount=500,
        currency="USD",
        reason="other",
        note="n",
        idempotency_key="k",
        request_fingerprint="f",
        actor=staff,
        created_at=START,
    )
    SandboxGateway().refund(
        request=RefundRequest(
            charge_reference=payment.gateway_reference,
            amount=500,
            currency="USD",
            idempotency_key=refund.public_id,
        )
    )
    assert run(START + dt.timedelta(minutes=5)).reconciled == 1
    refund.refresh_from_db()
    assert refund.status == "succeeded"


def test_a_renewal_needing_authentication_is_past_due_until_the_customer_confirms(
    active, customer, django_capture_on_commit_callbacks
):
    from tests.billing.conftest import CARD_REQUIRES_AUTHENTICATION
    from tollgate.billing.gateways.sandbox.adapter import SandboxGateway

    add_card(customer, CARD_REQUIRES_AUTHENTICATION)
    with django_capture_on_commit_callbacks(execute=True):
        run(at(2025, 2, 28, 10))
    active.refresh_from_db()
    [invoice] = cycle_invoices(active)
    payment = invoice.payments.get()
    assert (active.status, payment.status) == ("past_due", "requires_action")
    assert payment.action_url in mail.outbox[-1].body
    # Not retried while the customer may still confirm (until the authentication window closes).
    assert run(at(2025, 3, 1, 8)).charged == 0
    SandboxGateway().action_complete(charge_reference=payment.gateway_reference, authenticated=True)
    services.payment_reconcile(payment=payment)
    active.refresh_from_db()
    assert active.status == SubscriptionStatus.ACTIVE


def test_renewals_cost_a_bounded_number_of_queries_each(
    make_customer, price, django_assert_max_num_queries
):
    with clock.frozen(START):
        for index in range(5):
            payer = make_customer(f"payer{index}@example.org")
            add_card(payer, CARD_OK)
            services.subscription_start(
                customer=payer, price=price("pro"), idempotency_key=new_key()
            )
    # Fixed cost of the empty claims plus at most 48 per renewal, invoice, charge and receipt.
    with django_assert_max_num_queries(24 + 5 * 48):
        assert run(at(2025, 2, 28, 10)).renewed == 5
