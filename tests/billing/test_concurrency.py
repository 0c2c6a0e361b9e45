"""Races against PostgreSQL with real threads, each on its own connection (no mocked locks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from tests import concurrency
from tests.billing.conftest import CARD_INSUFFICIENT_FUNDS, CARD_OK, add_card, new_key
from tollgate.accounts.models import User
from tollgate.billing import services
from tollgate.billing.errors import (
    InvoiceNotPayable,
    PaymentInProgress,
    RefundExceedsCaptured,
)
from tollgate.billing.gateways.sandbox.models import SandboxCharge, SandboxRefund
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Customer, Invoice, PaymentAttempt, PaymentMethod, Refund
from tollgate.core.errors import IdempotencyKeyInProgress

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row locks under real concurrency need PostgreSQL (SQLite serializes all writers)",
    ),
]
WORKERS = 8


def race(task: Callable[[int], Any], workers: int = WORKERS) -> list[Any]:
    return concurrency.race(task, workers, timeout=60)


@pytest.fixture
def paid(customer, price):
    add_card(customer, CARD_OK)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    return PaymentAttempt.objects.get()


def test_concurrent_partial_refunds_never_exceed_the_charge(paid, staff):
    def refund(index: int) -> Refund:
        return services.refund_issue(
            payment=paid,
            amount=500,
            reason=Refund.Reason.OTHER,
            note="race",
            actor=staff,
            idempotency_key=f"race-{index}",
        )

    outcomes = race(refund)
    succeeded = [o for o in outcomes if isinstance(o, Refund)]
    assert len(succeeded) == 5, outcomes  # 5 x 500 <= 2900 < 6 x 500
    assert all(isinstance(o, RefundExceedsCaptured) for o in outcomes if not isinstance(o, Refund))
    paid.refresh_from_db()
    assert paid.amount_refunded == 2500
    assert sum(SandboxRefund.objects.values_list("amount", flat=True)) == 2500
    assert ledger_check().ok


def test_concurrent_identical_refunds_refund_once(paid, staff):
    def refund(index: int) -> Refund:
        return services.refund_issue(
            payment=paid,
            amount=900,
            reason=Refund.Reason.DUPLICATE,
            note="same",
            actor=staff,
            idempotency_key="one-key",
        )

    outcomes = race(refund)
    refunds = {o.pk for o in outcomes if isinstance(o, Refund)}
    assert len(refunds) == 1, outcomes
    assert all(isinstance(o, Refund | IdempotencyKeyInProgress) for o in outcomes)
    assert Refund.objects.count() == 1
    assert SandboxRefund.objects.count() == 1
    paid.refresh_from_db()
    assert paid.amount_refunded == 900


def test_concurrent_payments_of_one_invoice_charge_it_once(customer, price):
    add_card(customer, CARD_INSUFFICIENT_FUNDS)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    invoice = Invoice.objects.get()
    session = services.payment_method_setup_start(customer=customer, return_url="https://t.test/")
    from tollgate.billing.gateways.sandbox.adapter import SandboxGateway

    card = (
        SandboxGateway()
        .setup_submit(
            session_reference=session.reference, number=CARD_OK, exp_month=1, exp_year=2090
        )
        .card
    )
    PaymentMethod.objects.filter(customer=customer).update(is_default=False)
    PaymentMethod.objects.create(
        customer=customer,
        gateway="sandbox",
        gateway_token=card.token,
        brand="visa",
        last4="4242",
        exp_month=1,
        exp_year=2090,
        is_default=True,
    )

    outcomes = race(
        lambda index: services.invoice_pay(
            invoice=invoice, off_session=True, idempotency_key=new_key()
        )
    )
    paid = [o for o in outcomes if isinstance(o, PaymentAttempt)]
    assert len(paid) == 1, outcomes
    assert all(
        isinstance(o, PaymentAttempt | PaymentInProgress | InvoiceNotPayable) for o in outcomes
    )
    assert SandboxCharge.objects.filter(status="succeeded").count() == 1
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert ledger_check().ok


def test_concurrent_first_uses_create_one_customer(db):
    user = User.objects.create_user(
        email="race@example.org", password="correct-horse-battery-staple-42"
    )
    outcomes = race(lambda index: services.customer_get_or_create(user=user))
    assert {o.pk for o in outcomes if isinstance(o, Customer)} == {Customer.objects.get().pk}, (
        outcomes
    )


def test_three_workers_running_the_clock_charge_every_renewal_exactly_once(make_customer, price):
    import datetime as dt

    from tollgate.billing.clock import billing_run
    from tollgate.core import clock

    start = dt.datetime(2025, 1, 15, 9, tzinfo=dt.UTC)
    with clock.frozen(start):
        for index in range(60):
            customer = make_customer(f"payer{index}@example.org")
            add_card(customer, CARD_OK)
            services.subscription_start(
                customer=customer, price=price("pro"), idempotency_key=new_key()
            )
    with clock.frozen(dt.datetime(2025, 4, 16, tzinfo=dt.UTC)):  # three periods due for each
        outcomes = race(lambda index: billing_run(batch_size=7), workers=3)
    assert all(not isinstance(o, Exception) for o in outcomes), outcomes
    assert sum(o.renewed for o in outcomes) == 180
    assert sum(o.charged for o in outcomes) == 180
    assert sum(o.failed for o in outcomes) == 0
    cycle = Invoice.objects.filter(billing_reason="subscription_cycle")
    assert cycle.count() == 180
    assert cycle.filter(status="paid").count() == 180
    assert PaymentAttempt.objects.filter(invoice__in=cycle).count() == 180
    assert SandboxCharge.objects.count() == 240  # 60 first payments + 180 renewals, none twice
    assert ledger_check().ok


def test_the_sandbox_answers_concurrent_requests_with_one_key_from_one_record(db):
    from tollgate.billing.gateways.base import ChargeRequest, RefundRequest
    from tollgate.billing.gateways.sandbox.adapter import SandboxGateway

    gateway = SandboxGateway()
    customer_ref = gateway.customer_create(customer_id="cus_RACE", email="race@example.org")
    session = gateway.setup_start(customer_reference=customer_ref, return_url="https://t.test/")
    token = gateway.setup_submit(
        session_reference=session.reference, number=CARD_OK, exp_month=1, exp_year=2090
    ).card.token
    request = ChargeRequest(
        customer_reference=customer_ref,
        payment_method_token=token,
        amount=1000,
        currency="USD",
        idempotency_key="same",
        off_session=True,
    )

    charges = race(lambda index: gateway.charge(request=request))
    assert len(set(charges)) == 1, charges
    assert SandboxCharge.objects.count() == 1
    refund = RefundRequest(
        charge_reference=charges[0].reference,
        amount=400,
        currency="USD",
        idempotency_key="same-refund",
    )
    refunds = race(lambda index: gateway.refund(request=refund))
    assert len(set(refunds)) == 1, refunds
    assert SandboxRefund.objects.count() == 1
