"""Plain renewals are done set-wise: the same rows as one by one, with a fixed number of statements
per batch plus a few per renewal (the gateway's charge and the receipt)."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.core import mail
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from tests.billing.conftest import CARD_OK, CARD_REQUIRES_AUTHENTICATION, add_card, new_key
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.errors import InvoiceImmutable, InvoiceTotalsMismatch
from tollgate.billing.integrity import ledger_check
from tollgate.billing.locks import lock_subscription
from tollgate.billing.models import Invoice, LedgerEntry, PaymentAttempt, PaymentMethod
from tollgate.billing.periods import Period
from tollgate.billing.states import InvoiceStatus, PaymentStatus, SubscriptionStatus
from tollgate.billing.steps import invoices as invoice_steps
from tollgate.billing.steps.renewals import (
    PlainRenewal,
    renewals_begin_locked,
    subscription_renew_locked,
)
from tollgate.core import clock

pytestmark = pytest.mark.django_db
START = dt.datetime(2025, 1, 31, 10, tzinfo=dt.UTC)
RENEWAL = dt.datetime(2025, 2, 28, 10, 1, tzinfo=dt.UTC)


_emails = itertools.count()


def subscribe(make_customer, price, count: int, card: str = CARD_OK, start=START) -> list:
    subscriptions = []
    for _ in range(count):
        customer = make_customer(email=f"payer{next(_emails)}@example.org")
        add_card(customer, card)
        with clock.frozen(start):
            subscriptions.append(
                services.subscription_start(
                    customer=customer, price=price("pro"), idempotency_key=new_key()
                )
            )
    return subscriptions


def renew() -> tuple[int, int]:
    """Run the clock at the renewal; (renewed, statements)."""
    with CaptureQueriesContext(connection) as queries, clock.frozen(RENEWAL):
        result = billing_run()
    assert result.failed == 0
    return result.renewed, len(queries)


def shape(subscription, base: dt.datetime) -> dict:
    """What a renewal leaves, in terms that depend neither on ids nor on when it started (times
    are relative to ``base``)."""

    def since(moment: dt.datetime | None) -> dt.timedelta | None:
        return None if moment is None else moment - base

    subscription.refresh_from_db()
    invoice = Invoice.objects.get(subscription=subscription, billing_reason="subscription_cycle")
    payment = PaymentAttempt.objects.get(invoice=invoice)
    return {
        "subscription": (
            subscription.status,
            since(subscription.current_period_start),
            since(subscription.current_period_end),
        ),
        "invoice": (
            invoice.status,
            invoice.total,
            invoice.amount_paid,
            since(invoice.period_start),
            since(invoice.period_end),
            since(invoice.paid_at),
            invoice.next_payment_attempt_at,
        ),
        "lines": [
            (kind, description.split(" (")[0], amount, price_id)
            for kind, description, amount, price_id in invoice.lines.values_list(
                "kind", "description", "amount", "price_id"
            )
        ],
        "payment": (
            payment.status,
            payment.attempt_number,
            payment.amount,
            payment.off_session,
            payment.idempotency_key == f"{invoice.public_id}-attempt-1",
            payment.payment_method_id is not None,
            bool(payment.gateway_reference),
            since(payment.completed_at),
        ),
        "ledger": sorted(
            LedgerEntry.objects.filter(transaction__invoice=invoice).values_list(
                "transaction__kind", "account", "amount"
            )
        ),
        "audit": sorted(
            AuditEvent.objects.filter(
                target_id__in=[subscription.public_id, payment.public_id]
            ).values_list("action", flat=True)
        ),
        "receipt": sum(invoice.number in message.body for message in mail.outbox),
    }


def test_a_plain_renewal_leaves_the_same_rows_as_the_one_by_one_path(
    make_customer, price, settings, django_capture_on_commit_callbacks
):
    day = dt.timedelta(days=1)
    [bulk] = subscribe(make_customer, price, 1)
    [single] = subscribe(make_customer, price, 1, card="5555555555554444", start=START + day)
    with django_capture_on_commit_callbacks(execute=True), clock.frozen(RENEWAL):
        assert billing_run().renewed == 1  # set-wise: a plain renewal
    # Installation-wide numbering is not a plain renewal: the next one goes one by one.
    settings.BILLING_INVOICE_NUMBERING = "account"
    with django_capture_on_commit_callbacks(execute=True), clock.frozen(RENEWAL + day):
        assert billing_run().renewed == 1
    assert shape(bulk, START) == shape(single, START + day)
    assert shape(bulk, START)["payment"][0] == PaymentStatus.SUCCEEDED
    assert shape(bulk, START)["receipt"] == 1
    assert Invoice.objects.get(
        subscription=bulk, billing_reason="subscription_cycle"
    ).number.endswith("-0002")
    assert ledger_check().ok


def test_renewing_a_batch_costs_a_few_statements_per_renewal_not_dozens(make_customer, price):
    subscribe(make_customer, price, 3)
    few_renewed, few = renew()
    # Twelve more, due at the same moment (the first three are now due next month).
    more = subscribe(make_customer, price, 12, card="5555555555554444")
    many_renewed, many = renew()
    assert (few_renewed, many_renewed) == (3, 12)
    # One by one, a renewal took about 35 statements; set-wise the batch's are shared and each
    # renewal adds only its charge at the gateway (the sandbox stores it: up to 4 statements).
    assert (many - few) / 9 <= 4, (few, many)
    paid = Invoice.objects.filter(
        subscription__in=more, billing_reason="subscription_cycle", status=InvoiceStatus.PAID
    )
    assert paid.count() == 12
    assert sum("receipt" in message.subject.lower() for message in mail.outbox) >= 0
    assert ledger_check().ok


def test_a_renewal_that_is_not_captured_at_once_is_recorded_one_by_one(make_customer, price):
    [plain] = subscribe(make_customer, price, 1)
    [needs_action] = subscribe(make_customer, price, 1)
    add_card(needs_action.customer, CARD_REQUIRES_AUTHENTICATION)
    renewed, _ = renew()
    assert renewed == 2
    assert PaymentAttempt.objects.get(
        invoice__subscription=plain, invoice__billing_reason="subscription_cycle"
    ).status == (PaymentStatus.SUCCEEDED)
    waiting = PaymentAttempt.objects.get(
        invoice__subscription=needs_action, invoice__billing_reason="subscription_cycle"
    )
    assert waiting.status == PaymentStatus.REQUIRES_ACTION
    assert waiting.action_url
    needs_action.refresh_from_db()
    assert needs_action.status == SubscriptionStatus.PAST_DUE  # until the customer authenticates
    assert ledger_check().ok


def inconsistent(build):
    """The period invoice builder, with a total that is not the sum of its lines."""

    def built(**kwargs):
        made = build(**kwargs)
        made.invoice.total += 1
        return made

    return built


def test_both_renewal_paths_refuse_an_invoice_whose_total_is_not_its_lines(
    make_customer, price, monkeypatch
):
    [subscription] = subscribe(make_customer, price, 1)
    monkeypatch.setattr(
        invoice_steps, "period_invoice_build", inconsistent(invoice_steps.period_invoice_build)
    )
    with clock.frozen(RENEWAL):
        # One by one.
        with pytest.raises(InvoiceTotalsMismatch), transaction.atomic():
            locks = lock_subscription(subscription)
            subscription_renew_locked(customer=locks.customer, subscription=locks.subscription)
        # Set-wise.
        with pytest.raises(InvoiceTotalsMismatch), transaction.atomic():
            locks = lock_subscription(subscription)
            renewals_begin_locked(
                renewals=[
                    PlainRenewal(
                        customer=locks.customer,
                        subscription=locks.subscription,
                        method=PaymentMethod.objects.get(customer=locks.customer),
                    )
                ],
                gateway_name="sandbox",
            )
        # And the clock, which tries set-wise and then one by one, renews nothing.
        result = billing_run()
    assert (result.renewed, result.failed) == (0, 1)
    assert not Invoice.objects.filter(billing_reason="subscription_cycle").exists()
    before = subscription.current_period_end
    subscription.refresh_from_db()
    assert subscription.current_period_end == before
    assert ledger_check().ok


def test_set_wise_renewal_writes_lines_to_drafts_only(make_customer, price):
    [subscription] = subscribe(make_customer, price, 1)
    with clock.frozen(RENEWAL), transaction.atomic():
        locks = lock_subscription(subscription)
        built = invoice_steps.period_invoice_build(
            subscription=locks.subscription,
            period=Period(start=RENEWAL, end=RENEWAL + dt.timedelta(days=31)),
            billing_reason=Invoice.BillingReason.SUBSCRIPTION_CYCLE,
        )
        built.invoice.status = InvoiceStatus.OPEN
        with pytest.raises(InvoiceImmutable):
            invoice_steps.period_invoices_save_locked([built])
