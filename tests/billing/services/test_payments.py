import pytest
from django.core import mail

from tests.billing.conftest import (
    CARD_INSUFFICIENT_FUNDS,
    CARD_OK,
    CARD_REQUIRES_AUTHENTICATION,
    CARD_STOLEN,
    CARD_TIMES_OUT,
    add_card,
    new_key,
)
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.errors import InvoiceNotPayable, PaymentInProgress, PaymentMethodRequired
from tollgate.billing.gateways.base import ChargeResult, ChargeStatus
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.billing.gateways.sandbox.models import SandboxCharge
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Invoice, LedgerTransaction, PaymentAttempt
from tollgate.billing.states import InvoiceStatus, PaymentStatus, SubscriptionStatus
from tollgate.billing.steps.payments import payment_begin_locked

pytestmark = pytest.mark.django_db


@pytest.fixture
def open_invoice(customer, price):
    """An incomplete subscription whose first invoice is open after a soft decline."""
    add_card(customer, CARD_INSUFFICIENT_FUNDS)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    invoice = Invoice.objects.get()
    assert invoice.status == InvoiceStatus.OPEN
    return invoice


def switch_card(customer, number):
    """Save another card without the automatic retry: the open invoice's attempt is made by the test."""
    from tollgate.billing.models import PaymentMethod

    session = services.payment_method_setup_start(customer=customer, return_url="https://t.test/")
    result = SandboxGateway().setup_submit(
        session_reference=session.reference, number=number, exp_month=1, exp_year=2090
    )
    PaymentMethod.objects.filter(customer=customer).update(is_default=False)
    card = result.card
    return PaymentMethod.objects.create(
        customer=customer,
        gateway="sandbox",
        gateway_token=card.token,
        brand=card.brand,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        is_default=True,
    )


def test_a_soft_decline_is_recorded_with_its_code(open_invoice):
    payment = open_invoice.payments.get()
    assert (payment.status, payment.decline_code, payment.decline_kind) == (
        "failed",
        "insufficient_funds",
        "soft",
    )
    assert payment.completed_at is not None
    assert AuditEvent.objects.filter(
        action="billing.payment_failed", target_id=payment.public_id
    ).exists()


def test_a_hard_decline_tells_the_customer_the_card_cannot_be_charged_again(
    open_invoice, customer, django_capture_on_commit_callbacks
):
    switch_card(customer, CARD_STOLEN)
    with django_capture_on_commit_callbacks(execute=True):
        payment = services.invoice_pay(
            invoice=open_invoice, off_session=True, idempotency_key=new_key()
        )
    assert (payment.status, payment.decline_code, payment.decline_kind) == (
        "failed",
        "stolen_card",
        "hard",
    )
    assert "cannot be charged again" in mail.outbox[-1].body


def test_authentication_is_requested_by_email_and_completes_through_reconciliation(
    open_invoice, customer, django_capture_on_commit_callbacks
):
    switch_card(customer, CARD_REQUIRES_AUTHENTICATION)
    with django_capture_on_commit_callbacks(execute=True):
        payment = services.invoice_pay(
            invoice=open_invoice, off_session=False, idempotency_key=new_key()
        )
    assert payment.status == PaymentStatus.REQUIRES_ACTION
    assert payment.action_url.endswith(f"/sandbox/authenticate/{payment.gateway_reference}/")
    notice = mail.outbox[-1]
    assert notice.subject == f"Confirm your payment for invoice {open_invoice.number}"
    assert payment.action_url in notice.body

    with pytest.raises(PaymentInProgress):
        services.invoice_pay(invoice=open_invoice, off_session=False, idempotency_key=new_key())
    # Asking before the customer acted changes nothing.
    assert services.payment_reconcile(payment=payment).status == PaymentStatus.REQUIRES_ACTION

    SandboxGateway().action_complete(charge_reference=payment.gateway_reference, authenticated=True)
    payment = services.payment_reconcile(payment=payment)
    assert payment.status == PaymentStatus.SUCCEEDED
    open_invoice.refresh_from_db()
    assert open_invoice.status == InvoiceStatus.PAID
    assert open_invoice.subscription.status == SubscriptionStatus.ACTIVE


def test_failed_authentication_fails_the_payment_and_allows_a_new_attempt(open_invoice, customer):
    switch_card(customer, CARD_REQUIRES_AUTHENTICATION)
    payment = services.invoice_pay(
        invoice=open_invoice, off_session=False, idempotency_key=new_key()
    )
    SandboxGateway().action_complete(
        charge_reference=payment.gateway_reference, authenticated=False
    )
    payment = services.payment_reconcile(payment=payment)
    assert (payment.status, payment.decline_code) == ("failed", "authentication_required")
    switch_card(customer, CARD_OK)
    assert (
        services.invoice_pay(
            invoice=open_invoice, off_session=False, idempotency_key=new_key()
        ).status
        == PaymentStatus.SUCCEEDED
    )


def test_a_timeout_leaves_the_outcome_unknown_and_blocks_charging_until_reconciled(
    open_invoice, customer
):
    switch_card(customer, CARD_TIMES_OUT)
    payment = services.invoice_pay(
        invoice=open_invoice, off_session=True, idempotency_key=new_key()
    )
    assert payment.status == PaymentStatus.UNKNOWN
    open_invoice.refresh_from_db()
    assert open_invoice.status == InvoiceStatus.OPEN
    with pytest.raises(PaymentInProgress) as refused:
        services.invoice_pay(invoice=open_invoice, off_session=True, idempotency_key=new_key())
    assert refused.value.details == {"payment": payment.public_id, "status": "unknown"}

    payment = services.payment_reconcile(payment=payment)
    assert payment.status == PaymentStatus.SUCCEEDED
    open_invoice.refresh_from_db()
    assert open_invoice.status == InvoiceStatus.PAID
    # The gateway charged once, under the attempt's key, and the ledger agrees.
    assert SandboxCharge.objects.filter(idempotency_key=payment.idempotency_key).count() == 1
    assert ledger_check().ok


def test_a_payment_the_gateway_never_received_is_sent_again_under_the_same_key(
    open_invoice, customer
):
    from django.db import transaction

    from tollgate.billing.locks import lock_invoice

    switch_card(customer, CARD_OK)
    with transaction.atomic():
        # A worker records the attempt, commits, and dies before the request leaves.
        crashed = payment_begin_locked(
            locks=lock_invoice(open_invoice), gateway_name="sandbox", off_session=True, actor=None
        ).payment
    assert crashed.status == PaymentStatus.PENDING
    with pytest.raises(PaymentInProgress):
        services.invoice_pay(invoice=open_invoice, off_session=True, idempotency_key=new_key())
    settled = services.payment_reconcile(payment=crashed)
    assert settled.status == PaymentStatus.SUCCEEDED
    assert SandboxCharge.objects.filter(idempotency_key=crashed.idempotency_key).count() == 1
    # Asking again finds the charge and changes nothing.
    assert services.payment_reconcile(payment=settled).status == PaymentStatus.SUCCEEDED
    assert ledger_check().ok


def test_reconciling_a_settled_payment_changes_nothing(open_invoice):
    payment = open_invoice.payments.get()
    assert services.payment_reconcile(payment=payment) is payment


def test_late_news_of_an_earlier_stage_does_not_undo_a_final_outcome(open_invoice, customer):
    switch_card(customer, CARD_REQUIRES_AUTHENTICATION)
    payment = services.invoice_pay(
        invoice=open_invoice, off_session=False, idempotency_key=new_key()
    )
    SandboxGateway().action_complete(charge_reference=payment.gateway_reference, authenticated=True)
    services.payment_reconcile(payment=payment)
    stale = ChargeResult(status=ChargeStatus.REQUIRES_ACTION, reference=payment.gateway_reference)
    recorded = services.payment_outcome_record(payment=payment, result=stale, actor=None)
    assert recorded.status == PaymentStatus.SUCCEEDED
    assert LedgerTransaction.objects.filter(kind="payment_captured").count() == 1


def test_a_paid_invoice_cannot_be_charged_again(customer, price):
    add_card(customer, CARD_OK)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    with pytest.raises(InvoiceNotPayable):
        services.invoice_pay(
            invoice=Invoice.objects.get(), off_session=True, idempotency_key=new_key()
        )
    assert PaymentAttempt.objects.count() == 1


def test_paying_needs_a_default_card(open_invoice, customer):
    from tollgate.billing.models import PaymentMethod

    PaymentMethod.objects.filter(customer=customer).update(is_default=False)
    with pytest.raises(PaymentMethodRequired):
        services.invoice_pay(invoice=open_invoice, off_session=True, idempotency_key=new_key())
