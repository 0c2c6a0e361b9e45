"""Payments left waiting for the customer's authentication (3-D Secure) expire on the billing clock."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail

from tests.billing.conftest import CARD_OK, CARD_REQUIRES_AUTHENTICATION, add_card, new_key
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Invoice, PaymentAttempt
from tollgate.billing.states import InvoiceStatus, PaymentStatus, SubscriptionStatus
from tollgate.core import clock

pytestmark = pytest.mark.django_db
START = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
RENEWAL = dt.datetime(2025, 4, 1, 10, tzinfo=dt.UTC)


def run(moment):
    with clock.frozen(moment):
        return billing_run()


@pytest.fixture
def awaiting_renewal(customer, price):
    """A renewal charge the bank wants the customer to authenticate, made at RENEWAL."""
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
    add_card(customer, CARD_REQUIRES_AUTHENTICATION)
    run(RENEWAL)
    payment = PaymentAttempt.objects.get(invoice__billing_reason="subscription_cycle")
    assert payment.status == PaymentStatus.REQUIRES_ACTION
    return subscription, payment


def test_an_unauthenticated_renewal_payment_fails_after_23_hours_and_dunning_goes_on(
    awaiting_renewal, django_capture_on_commit_callbacks
):
    subscription, payment = awaiting_renewal
    assert run(RENEWAL + dt.timedelta(hours=22, minutes=59)).actions_expired == 0
    expiry = RENEWAL + dt.timedelta(hours=23)
    with django_capture_on_commit_callbacks(execute=True):
        result = run(expiry)
    assert result.actions_expired == 1
    payment.refresh_from_db()
    assert (payment.status, payment.decline_code, payment.decline_kind) == (
        "failed",
        "authentication_expired",
        "soft",
    )
    assert payment.completed_at == expiry
    invoice = payment.invoice
    invoice.refresh_from_db()
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.PAST_DUE
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.next_payment_attempt_at == expiry + dt.timedelta(days=1)
    body = mail.outbox[-1].body
    assert "the time to do so has run out" in body
    assert "We will try again on April 3, 2025" in body
    assert AuditEvent.objects.filter(
        action="billing.payment_failed", details__decline="authentication_expired"
    ).exists()
    # The retry is another charge, which again asks for authentication.
    assert run(expiry + dt.timedelta(days=1)).charged == 1
    assert invoice.payments.filter(status="requires_action").count() == 1
    assert ledger_check().ok


def test_an_authentication_the_gateway_recorded_but_never_told_us_of_is_kept(awaiting_renewal):
    subscription, payment = awaiting_renewal
    # The customer authenticated; the event never reached Tollgate.
    SandboxGateway().action_complete(charge_reference=payment.gateway_reference, authenticated=True)
    assert run(RENEWAL + dt.timedelta(hours=23)).actions_expired == 1
    payment.refresh_from_db()
    subscription.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.invoice.status == InvoiceStatus.PAID
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert ledger_check().ok


def test_the_expiry_is_a_setting(settings, awaiting_renewal):
    settings.BILLING_PAYMENT_ACTION_EXPIRY_HOURS = 2
    _, payment = awaiting_renewal
    assert run(RENEWAL + dt.timedelta(hours=1, minutes=59)).actions_expired == 0
    assert run(RENEWAL + dt.timedelta(hours=2)).actions_expired == 1
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED


def test_an_unauthenticated_first_payment_expires_with_its_subscription_in_one_run(customer, price):
    add_card(customer, CARD_REQUIRES_AUTHENTICATION)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
    assert subscription.status == SubscriptionStatus.INCOMPLETE
    result = run(START + dt.timedelta(hours=23))
    assert (result.actions_expired, result.expired) == (1, 1)
    subscription.refresh_from_db()
    invoice = Invoice.objects.get()
    assert subscription.status == SubscriptionStatus.INCOMPLETE_EXPIRED
    assert invoice.status == InvoiceStatus.VOID
    assert invoice.payments.get().decline_code == "authentication_expired"
    assert ledger_check().ok


def test_expiring_a_payment_that_is_no_longer_waiting_changes_nothing(awaiting_renewal):
    _, payment = awaiting_renewal
    SandboxGateway().action_complete(
        charge_reference=payment.gateway_reference, authenticated=False
    )
    services.payment_reconcile(payment=payment)
    payment.refresh_from_db()
    assert payment.decline_code == "authentication_required"
    assert services.payment_action_expire(payment=payment) == payment
    payment.refresh_from_db()
    assert (payment.status, payment.decline_code) == ("failed", "authentication_required")


def test_a_stale_decision_to_expire_does_not_undo_news_that_arrived_first(awaiting_renewal):
    _, payment = awaiting_renewal
    stale = PaymentAttempt.objects.get(pk=payment.pk)  # read while still awaiting action
    SandboxGateway().action_complete(charge_reference=payment.gateway_reference, authenticated=True)
    services.payment_reconcile(payment=payment)
    # The worker that read it earlier now asks the gateway, which says succeeded: kept as it is.
    assert services.payment_action_expire(payment=stale).status == PaymentStatus.SUCCEEDED
    assert PaymentAttempt.objects.get(pk=payment.pk).status == PaymentStatus.SUCCEEDED


def test_an_expiry_decided_before_the_customer_authenticated_does_not_undo_the_payment(
    awaiting_renewal,
):
    from tollgate.billing.gateways.base import ChargeResult, ChargeStatus, DeclineKind

    _, payment = awaiting_renewal
    # A worker asked the gateway (still waiting) and decided to expire the payment; before it
    # recorded that, the customer authenticated and the success was recorded.
    decided = ChargeResult(
        status=ChargeStatus.FAILED,
        reference=payment.gateway_reference,
        decline_code="authentication_expired",
        decline_kind=DeclineKind.SOFT,
    )
    SandboxGateway().action_complete(charge_reference=payment.gateway_reference, authenticated=True)
    services.payment_reconcile(payment=payment)
    recorded = services.payment_outcome_record(
        payment=payment, result=decided, actor=None, only_from=PaymentStatus.REQUIRES_ACTION
    )
    assert recorded.status == PaymentStatus.SUCCEEDED
    assert ledger_check().ok


def test_an_expired_payment_is_canceled_at_the_gateway_so_it_can_no_longer_be_approved(
    awaiting_renewal,
):
    from tollgate.billing.gateways.base import ChargeStatus, GatewayRequestRefused

    _, payment = awaiting_renewal
    assert run(RENEWAL + dt.timedelta(hours=23)).actions_expired == 1
    gateway = SandboxGateway()
    # The customer opens the old authentication link: the gateway no longer lets them approve it.
    with pytest.raises(GatewayRequestRefused):
        gateway.action_complete(charge_reference=payment.gateway_reference, authenticated=True)
    known = gateway.charge_lookup(idempotency_key=payment.idempotency_key)
    assert known is not None
    assert (known.status, known.decline_code) == (ChargeStatus.FAILED, "canceled")
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    assert ledger_check().ok


def test_canceling_a_charge_that_was_just_authenticated_keeps_the_payment(awaiting_renewal):
    from tollgate.billing.gateways.base import ChargeStatus

    _, payment = awaiting_renewal
    gateway = SandboxGateway()
    gateway.action_complete(charge_reference=payment.gateway_reference, authenticated=True)
    # Too late to cancel: the gateway answers with what is true now.
    assert gateway.charge_cancel(idempotency_key=payment.idempotency_key).status == (
        ChargeStatus.SUCCEEDED
    )
