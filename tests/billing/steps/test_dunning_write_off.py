"""A written-off (uncollectible) invoice can still be paid, as at Stripe: the write-off is reversed."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail

from tests.billing.conftest import CARD_INSUFFICIENT_FUNDS, CARD_OK, CARD_STOLEN, add_card, new_key
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Invoice, LedgerEntry, LedgerTransaction
from tollgate.billing.states import InvoiceStatus, PaymentStatus, SubscriptionStatus
from tollgate.core import clock

pytestmark = pytest.mark.django_db
START = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


@pytest.fixture
def written_off(customer, price):
    """A renewal declined for good (stolen card): the subscription ended, its invoice written off."""
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
    add_card(customer, CARD_STOLEN)
    with clock.frozen(dt.datetime(2025, 4, 1, 10, tzinfo=dt.UTC)):
        billing_run()
    invoice = Invoice.objects.get(billing_reason="subscription_cycle")
    subscription.refresh_from_db()
    assert (subscription.status, invoice.status) == ("canceled", "uncollectible")
    return invoice


def balances(invoice):
    rows = LedgerEntry.objects.filter(transaction__invoice=invoice)
    totals: dict[str, int] = {}
    for row in rows:
        totals[row.account] = totals.get(row.account, 0) + row.amount
    return {account: total for account, total in totals.items() if total}


def test_a_new_card_does_not_charge_a_written_off_invoice_by_itself(written_off, customer):
    add_card(customer, CARD_OK)
    written_off.refresh_from_db()
    assert written_off.status == InvoiceStatus.UNCOLLECTIBLE
    assert written_off.payments.count() == 1


def test_paying_a_written_off_invoice_reverses_the_write_off_and_settles_it(
    written_off, customer, django_capture_on_commit_callbacks
):
    assert balances(written_off) == {"bad_debt": 2900, "revenue": -2900}
    add_card(customer, CARD_OK)
    with django_capture_on_commit_callbacks(execute=True):
        payment = services.invoice_pay(
            invoice=written_off, off_session=False, idempotency_key="pay-late"
        )
    assert payment.status == PaymentStatus.SUCCEEDED
    written_off.refresh_from_db()
    assert (written_off.status, written_off.amount_paid) == ("paid", 2900)
    reversal = LedgerTransaction.objects.get(invoice=written_off, kind="write_off_reversed")
    assert {(e.account, e.amount) for e in reversal.entries.all()} == {
        ("receivable", 2900),
        ("bad_debt", -2900),
    }
    # Revenue as billed, the money at the gateway, nothing receivable, no bad debt left.
    assert balances(written_off) == {"gateway_clearing": 2900, "revenue": -2900}
    assert written_off.subscription.status == SubscriptionStatus.CANCELED  # ended stays ended
    assert mail.outbox[-1].subject.startswith("Receipt")
    assert AuditEvent.objects.filter(action="billing.invoice_write_off_reversed").exists()
    assert ledger_check().ok
    again = services.invoice_pay(invoice=written_off, off_session=False, idempotency_key="pay-late")
    assert again == payment


def test_a_declined_payment_of_a_written_off_invoice_leaves_it_written_off(
    written_off, customer, django_capture_on_commit_callbacks
):
    add_card(customer, CARD_INSUFFICIENT_FUNDS)
    with django_capture_on_commit_callbacks(execute=True):
        payment = services.invoice_pay(
            invoice=written_off, off_session=False, idempotency_key=new_key()
        )
    assert payment.status == PaymentStatus.FAILED
    written_off.refresh_from_db()
    assert written_off.status == InvoiceStatus.UNCOLLECTIBLE
    assert not LedgerTransaction.objects.filter(kind="write_off_reversed").exists()
    body = mail.outbox[-1].body
    assert "Add or update your card" in body
    assert "last try" not in body
    assert ledger_check().ok


def test_the_ledger_check_expects_a_reversal_for_every_paid_written_off_invoice(
    written_off, customer
):
    from tollgate.billing.integrity import _invoice_problems

    add_card(customer, CARD_OK)
    services.invoice_pay(invoice=written_off, off_session=False, idempotency_key=new_key())
    written_off.refresh_from_db()
    complete = {
        (written_off.pk, "invoice_finalized"): 1,
        (written_off.pk, "invoice_written_off"): 1,
        (written_off.pk, "write_off_reversed"): 1,
    }
    check = {"lines": 2900, "captured": 2900, "receivable": 0}
    assert _invoice_problems(written_off, postings=_defaults(complete), **check) == []
    missing_reversal = {**complete, (written_off.pk, "write_off_reversed"): 0}
    problems = _invoice_problems(written_off, postings=_defaults(missing_reversal), **check)
    assert [detail for _, detail in problems] == ["write_off_reversed posted 0 times, expected 1"]
    # A reversal of a write-off that never was.
    missing_write_off = {**complete, (written_off.pk, "invoice_written_off"): 0}
    problems = _invoice_problems(written_off, postings=_defaults(missing_write_off), **check)
    assert [detail for _, detail in problems] == ["write_off_reversed posted 1 times, expected 0"]


def _defaults(postings):
    from collections import defaultdict

    return defaultdict(int, postings)
