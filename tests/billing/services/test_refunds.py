import pytest
from django.core import mail

from tests.billing.conftest import CARD_INSUFFICIENT_FUNDS, CARD_OK, add_card, new_key
from tollgate.billing import services
from tollgate.billing.errors import (
    PaymentNotCaptured,
    RefundExceedsCaptured,
)
from tollgate.billing.gateways.base import RefundRequest
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.billing.gateways.sandbox.models import SandboxRefund
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import LedgerEntry, PaymentAttempt, Refund
from tollgate.billing.states import RefundStatus
from tollgate.billing.steps.refunds import refund_fingerprint
from tollgate.core import clock
from tollgate.core.errors import (
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    PermissionDenied,
    ValidationFailed,
)

pytestmark = pytest.mark.django_db
Reason = Refund.Reason


@pytest.fixture
def payment(customer, price):
    add_card(customer, CARD_OK)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    return PaymentAttempt.objects.get(status="succeeded")


def refund(payment, staff, amount, key, note="Customer asked", reason=Reason.REQUESTED_BY_CUSTOMER):
    return services.refund_issue(
        payment=payment, amount=amount, reason=reason, note=note, actor=staff, idempotency_key=key
    )


def test_a_partial_refund_is_posted_emailed_and_reserved(
    payment, staff, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        issued = refund(payment, staff, 1000, "k1")
    assert issued.public_id.startswith("ref_")
    assert (issued.status, issued.amount, issued.currency, issued.actor) == (
        "succeeded",
        1000,
        "USD",
        staff,
    )
    assert issued.gateway_reference.startswith("sbre_")
    payment.refresh_from_db()
    assert payment.amount_refunded == 1000
    entries = {
        (e.account, e.amount) for e in LedgerEntry.objects.filter(transaction__refund=issued)
    }
    assert entries == {("refunds", 1000), ("gateway_clearing", -1000)}
    assert mail.outbox[-1].subject == "Your refund of $10.00 from Tollgate"
    assert ledger_check().ok


def test_refunds_never_exceed_the_captured_amount(payment, staff):
    refund(payment, staff, 2000, "k1")
    with pytest.raises(RefundExceedsCaptured) as refused:
        refund(payment, staff, 901, "k2")
    assert refused.value.details == {"refundable": 900, "requested": 901}
    refund(payment, staff, 900, "k3")
    payment.refresh_from_db()
    assert payment.amount_refunded == payment.amount == 2900
    assert Refund.objects.filter(status="succeeded").count() == 2


def test_the_same_key_and_request_returns_the_first_refund(payment, staff):
    first = refund(payment, staff, 500, "same")
    assert refund(payment, staff, 500, "same") == first
    with pytest.raises(IdempotencyKeyReused):
        refund(payment, staff, 600, "same")
    payment.refresh_from_db()
    assert payment.amount_refunded == 500


def test_a_key_still_with_the_gateway_is_a_conflict(payment, staff):
    pending = crashed_refund(payment, staff, 700, key="inflight")
    with pytest.raises(IdempotencyKeyInProgress):
        refund(payment, staff, 700, "inflight")
    assert pending.status == RefundStatus.PENDING


@pytest.mark.parametrize(
    ("amount", "reason", "note", "field"),
    [
        (0, Reason.DUPLICATE, "x", "amount"),
        (True, Reason.DUPLICATE, "x", "amount"),
        (5, "whim", "x", "reason"),
        (5, Reason.OTHER, "  ", "note"),
    ],
)
def test_refund_requests_are_validated(payment, staff, amount, reason, note, field):
    with pytest.raises(ValidationFailed) as refused:
        refund(payment, staff, amount, "k", note=note, reason=reason)
    assert refused.value.details == {"field": field}


def test_only_staff_can_refund(payment, customer):
    with pytest.raises(PermissionDenied):
        refund(payment, customer.user, 100, "k")


def test_only_a_captured_payment_can_be_refunded(customer, price, staff):
    add_card(customer, CARD_INSUFFICIENT_FUNDS)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    with pytest.raises(PaymentNotCaptured):
        refund(PaymentAttempt.objects.get(), staff, 100, "k")


def test_a_refund_the_gateway_refuses_releases_its_reservation(payment, staff):
    # Someone refunded the whole charge on the gateway's own dashboard, outside Tollgate.
    SandboxGateway().refund(
        request=RefundRequest(
            charge_reference=payment.gateway_reference,
            amount=2900,
            currency="USD",
            idempotency_key="dashboard",
        )
    )
    failed = refund(payment, staff, 100, "k")
    assert (failed.status, failed.failure_code) == ("failed", "amount_too_large")
    payment.refresh_from_db()
    assert payment.amount_refunded == 0
    assert ledger_check().ok


def crashed_refund(payment, staff, amount, *, key, at=None):
    """The state a crash leaves between reserving a refund and hearing from the gateway."""
    PaymentAttempt.objects.filter(pk=payment.pk).update(amount_refunded=amount)
    reason, note = Reason.REQUESTED_BY_CUSTOMER, "Customer asked"
    return Refund.objects.create(
        payment=payment,
        amount=amount,
        currency="USD",
        reason=reason,
        note=note,
        idempotency_key=key,
        actor=staff,
        created_at=at or clock.now(),
        request_fingerprint=refund_fingerprint(
            payment=payment, amount=amount, reason=reason, note=note
        ),
    )


def test_a_pending_refund_is_reconciled_from_the_gateway(payment, staff):
    pending = crashed_refund(payment, staff, 700, key="k")
    SandboxGateway().refund(
        request=RefundRequest(
            charge_reference=payment.gateway_reference,
            amount=700,
            currency="USD",
            idempotency_key=pending.public_id,
        )
    )
    reconciled = services.refund_reconcile(refund=pending)
    assert reconciled.status == RefundStatus.SUCCEEDED
    assert services.refund_reconcile(refund=reconciled) is reconciled
    assert ledger_check().ok


def test_a_refund_the_gateway_never_received_is_sent_again_under_the_same_key(payment, staff):
    pending = crashed_refund(payment, staff, 700, key="k")
    sent = services.refund_reconcile(refund=pending)
    assert (sent.status, sent.amount) == ("succeeded", 700)
    assert SandboxRefund.objects.filter(idempotency_key=pending.public_id).count() == 1
    payment.refresh_from_db()
    assert payment.amount_refunded == 700
    assert str(sent) == sent.public_id
    assert ledger_check().ok
