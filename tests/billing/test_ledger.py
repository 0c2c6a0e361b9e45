import contextlib
import itertools

import pgtrigger
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.billing import ledger, services
from tollgate.billing.errors import LedgerImmutable, LedgerUnbalanced, RefundExceedsCaptured
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import (
    Invoice,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    PaymentAttempt,
    Refund,
)
from tollgate.core.money import Money

LEDGER_TRIGGERS = (
    "billing.LedgerEntry:ledger_entry_append_only",
    "billing.LedgerTransaction:ledger_transaction_append_only",
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def paid(customer, price):
    add_card(customer, CARD_OK)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    return PaymentAttempt.objects.get()


def test_a_clean_ledger_passes_the_check_and_the_command(paid, capsys):
    report = ledger_check()
    assert report.ok
    assert (report.transactions_checked, report.invoices_checked, report.payments_checked) == (
        2,
        1,
        1,
    )
    call_command("ledger_check")
    assert (
        "Ledger balanced: 2 transactions, 1 invoices, 1 payments checked."
        in capsys.readouterr().out
    )


def test_the_check_finds_an_unbalanced_or_empty_transaction(paid):
    from tollgate.billing.services import LineSpec

    posted = LedgerTransaction.objects.get(kind="payment_captured")
    LedgerEntry.objects.bulk_create(
        [
            LedgerEntry(
                transaction=posted, account=LedgerAccount.RECEIVABLE, amount=-1, currency="USD"
            )
        ]
    )
    draft = services.invoice_draft_create(
        customer=paid.invoice.customer,
        currency="USD",
        lines=[LineSpec(kind="plan_charge", description="x", amount=10)],
    )
    LedgerTransaction.objects.bulk_create(
        [
            LedgerTransaction(
                kind="invoice_finalized",
                customer=draft.customer,
                invoice=draft,
                occurred_at=posted.occurred_at,
            )
        ]
    )
    problems = {(problem.kind, problem.reference) for problem in ledger_check().problems}
    assert problems == {
        ("transaction_unbalanced", posted.public_id),
        ("transaction_empty", LedgerTransaction.objects.get(invoice=draft).public_id),
        ("invoice_posting_missing", draft.public_id),
        ("invoice_receivable_mismatch", paid.invoice.public_id),
    }
    with pytest.raises(CommandError, match="problems found"):
        call_command("ledger_check")


def test_the_check_finds_invoices_and_payments_that_disagree(paid):
    Invoice.objects.filter(pk=paid.invoice_id).update(total=3000, amount_paid=3000)
    PaymentAttempt.objects.filter(pk=paid.pk).update(amount_refunded=5)
    kinds = {problem.kind for problem in ledger_check().problems}
    assert kinds == {
        "invoice_total_mismatch",
        "invoice_payments_mismatch",
        "payment_refunds_mismatch",
    }


def test_the_check_finds_unposted_captures_and_refunds(paid, staff):
    services.refund_issue(
        payment=paid,
        amount=100,
        reason=Refund.Reason.DUPLICATE,
        note="dup",
        actor=staff,
        idempotency_key="k",
    )
    with (
        pgtrigger.ignore(*LEDGER_TRIGGERS),  # the database refuses it otherwise (PostgreSQL)
        connection.cursor() as cursor,
    ):  # remove postings behind the ledger's back
        cursor.execute(
            "DELETE FROM billing_ledgerentry WHERE transaction_id IN (SELECT id FROM billing_ledgertransaction WHERE kind IN ('payment_captured', 'refund_succeeded'))"
        )
        cursor.execute(
            "DELETE FROM billing_ledgertransaction WHERE kind IN ('payment_captured', 'refund_succeeded')"
        )
    kinds = {problem.kind for problem in ledger_check().problems}
    # The invoice's receivable is off too: the capture that cleared it is gone.
    assert kinds == {
        "payment_posting_mismatch",
        "refund_posting_missing",
        "invoice_receivable_mismatch",
    }


def test_ledger_records_are_append_only(paid):
    entry = LedgerEntry.objects.first()
    entry.amount = 1
    with pytest.raises(LedgerImmutable):
        entry.save()
    with pytest.raises(LedgerImmutable):
        entry.delete()
    with pytest.raises(LedgerImmutable):
        LedgerTransaction.objects.first().delete()
    assert "USD" in str(entry)
    assert "payment_captured" in str(LedgerTransaction.objects.get(kind="payment_captured"))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="database triggers: PostgreSQL")
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE billing_ledgerentry SET amount = amount + 1",
        "DELETE FROM billing_ledgerentry",
        "UPDATE billing_ledgertransaction SET occurred_at = occurred_at",
        "DELETE FROM billing_ledgertransaction",
    ],
)
def test_the_database_refuses_changing_or_removing_ledger_rows(paid, sql):
    with pytest.raises(DatabaseError, match="pgtrigger"), connection.cursor() as cursor:
        cursor.execute(sql)


def test_an_unbalanced_posting_is_refused(paid):
    invoice = Invoice.objects.get()
    with pytest.raises(LedgerUnbalanced):
        ledger.ledger_post(
            kind=LedgerTransaction.Kind.INVOICE_FINALIZED,
            customer=invoice.customer,
            invoice=invoice,
            occurred_at=invoice.created_at,
            entries=[
                (LedgerAccount.RECEIVABLE, Money(5, "USD")),
                (LedgerAccount.REVENUE, Money(-5, "EUR")),
            ],
        )
    with pytest.raises(ValueError, match="none of them zero"):
        ledger.ledger_post(
            kind=LedgerTransaction.Kind.INVOICE_FINALIZED,
            customer=invoice.customer,
            invoice=invoice,
            occurred_at=invoice.created_at,
            entries=[],
        )


KEYS = itertools.count()
operations = st.lists(
    st.one_of(
        st.tuples(st.just("refund"), st.integers(min_value=1, max_value=3000)),
        st.tuples(st.just("invoice"), st.integers(min_value=0, max_value=5000)),
    ),
    max_size=8,
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=operations)
def test_the_ledger_stays_balanced_after_any_sequence_of_operations(paid, staff, steps):
    from tollgate.billing.services import LineSpec

    customer = paid.invoice.customer
    # Examples share the fixture's payment, so the ledger grows across them: it must stay balanced.
    for operation, amount in steps:
        if operation == "refund":
            with contextlib.suppress(RefundExceedsCaptured):
                services.refund_issue(
                    payment=paid,
                    amount=amount,
                    reason=Refund.Reason.OTHER,
                    note="n",
                    actor=staff,
                    idempotency_key=f"refund-{next(KEYS)}",
                )
        else:
            draft = services.invoice_draft_create(
                customer=customer,
                currency="USD",
                lines=[LineSpec(kind="plan_charge", description="x", amount=amount)],
            )
            services.invoice_finalize(invoice=draft)
    report = ledger_check()
    assert report.ok, report.problems
    balances = {}
    for entry in LedgerEntry.objects.all():
        balances[entry.currency] = balances.get(entry.currency, 0) + entry.amount
    assert set(balances.values()) <= {0}
