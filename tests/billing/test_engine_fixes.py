"""Edges of the engine: a card attached twice, a charge the gateway refuses, voiding a written-off
invoice, and the trial rules each plan sets."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction

from tests.billing.conftest import (
    CARD_DECLINES_AFTER_ATTACH,
    CARD_OK,
    add_card,
    new_key,
)
from tollgate.billing import periods, services
from tollgate.billing.clock import billing_run
from tollgate.billing.errors import PaymentMethodRequired
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.billing.integrity import ledger_check
from tollgate.billing.locks import lock_invoice
from tollgate.billing.models import (
    Invoice,
    LedgerEntry,
    LedgerTransaction,
    PaymentAttempt,
)
from tollgate.billing.states import InvoiceStatus, PaymentStatus, SubscriptionStatus
from tollgate.billing.steps.invoices import invoice_void_locked, invoice_write_off_locked
from tollgate.catalog.models import Plan
from tollgate.core import clock

pytestmark = pytest.mark.django_db
START = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def run(moment):
    with clock.frozen(moment):
        return billing_run()


def test_attaching_the_same_card_session_again_does_not_charge_open_invoices_again(customer, price):
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    with clock.frozen(START):
        services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
    session = services.payment_method_setup_start(
        customer=customer, return_url="https://tollgate.test/billing/"
    )
    SandboxGateway().setup_submit(
        session_reference=session.reference,
        number=CARD_DECLINES_AFTER_ATTACH,
        exp_month=12,
        exp_year=2099,
    )
    first = services.payment_method_attach(customer=customer, setup_reference=session.reference)
    attempts = PaymentAttempt.objects.count()
    # The browser comes back to the return page again (a reload): same card, no new charge.
    again = services.payment_method_attach(customer=customer, setup_reference=session.reference)
    assert again == first
    assert PaymentAttempt.objects.count() == attempts


def test_a_charge_the_gateway_refuses_fails_the_attempt_instead_of_leaving_it_pending(
    customer, price, monkeypatch
):
    from tollgate.billing.gateways.base import GatewayRequestRefused

    add_card(customer, CARD_OK)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )

    def refuse(self, *, requests):
        return [
            GatewayRequestRefused("this idempotency key was used for a different charge request")
            for _ in requests
        ]

    # The processor (outside our control) refuses every charge of the batch.
    monkeypatch.setattr(SandboxGateway, "charge_many", refuse)
    result = run(subscription.current_period_end + dt.timedelta(minutes=1))
    assert result.charged == 1
    payment = PaymentAttempt.objects.get(invoice__billing_reason="subscription_cycle")
    assert (payment.status, payment.decline_code, payment.decline_kind) == (
        PaymentStatus.FAILED,
        "gateway_refused",
        "soft",
    )
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.PAST_DUE
    invoice = payment.invoice
    assert invoice.next_payment_attempt_at is not None  # dunning goes on with a new key
    monkeypatch.undo()
    assert run(invoice.next_payment_attempt_at).charged == 1
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert ledger_check().ok


def _balance(invoice: Invoice, account: str) -> int:
    return sum(
        LedgerEntry.objects.filter(transaction__invoice=invoice, account=account).values_list(
            "amount", flat=True
        )
    )


def test_voiding_a_written_off_invoice_takes_it_out_of_bad_debt_not_receivables(customer, price):
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
    renewal = services.invoice_create_for_period(
        subscription=subscription,
        period=periods.period_number(anchor=subscription.billing_anchor, months=1, index=1),
    )
    with transaction.atomic():
        locks = lock_invoice(renewal)
        invoice_write_off_locked(customer=locks.customer, invoice=locks.invoice)
    with transaction.atomic():
        locks = lock_invoice(renewal)
        invoice_void_locked(customer=locks.customer, invoice=locks.invoice)
    renewal.refresh_from_db()
    assert renewal.status == InvoiceStatus.VOID
    assert _balance(renewal, "receivable") == 0
    assert _balance(renewal, "bad_debt") == 0
    assert LedgerTransaction.objects.filter(invoice=renewal, kind="invoice_voided").count() == 1
    assert ledger_check().ok


def test_a_plan_can_require_a_card_to_start_its_trial(customer, price):
    Plan.objects.filter(code="starter").update(trial_requires_card=True)
    with pytest.raises(PaymentMethodRequired):
        services.subscription_start(
            customer=customer, price=price("starter"), idempotency_key=new_key()
        )
    add_card(customer, CARD_OK)
    subscription = services.subscription_start(
        customer=customer, price=price("starter"), idempotency_key=new_key()
    )
    assert subscription.status == SubscriptionStatus.TRIALING


@pytest.mark.parametrize(
    ("plan_rule", "setting", "expected"),
    [
        ("incomplete", "canceled", SubscriptionStatus.INCOMPLETE),
        ("canceled", "incomplete", SubscriptionStatus.CANCELED),
        ("", "incomplete", SubscriptionStatus.INCOMPLETE),
        ("", "canceled", SubscriptionStatus.CANCELED),
    ],
)
def test_a_trial_ending_without_a_card_follows_its_plan_then_the_setting(
    customer, price, settings, plan_rule, setting, expected
):
    settings.BILLING_TRIAL_END_WITHOUT_CARD = setting
    Plan.objects.filter(code="starter").update(trial_end_without_card=plan_rule)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price("starter"), idempotency_key=new_key()
        )
    run(subscription.trial_end + dt.timedelta(minutes=1))
    subscription.refresh_from_db()
    assert subscription.status == expected
    assert ledger_check().ok
