"""The sandbox behaves like a processor: test cards, idempotency, lookups, listing and signed events."""

import datetime as dt
import json

import pytest

from tests.billing.conftest import (
    CARD_DECLINED,
    CARD_DECLINES_AFTER_ATTACH,
    CARD_INSUFFICIENT_FUNDS,
    CARD_OK,
    CARD_REQUIRES_AUTHENTICATION,
    CARD_STOLEN,
    CARD_TIMES_OUT,
)
from tollgate.billing.gateways.base import (
    ChargeRequest,
    ChargeStatus,
    DeclineKind,
    EventRejected,
    GatewayRequestRefused,
    GatewayUnavailable,
    RefundOutcome,
    RefundRequest,
    SetupStatus,
    TransactionKind,
    decline_kind_for,
)
from tollgate.billing.gateways.registry import gateway_get
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.billing.gateways.sandbox.models import (
    SandboxCard,
    SandboxCharge,
    SandboxCustomer,
    SandboxRefund,
    SandboxSetupSession,
)
from tollgate.core import clock

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)


@pytest.fixture
def gateway():
    return SandboxGateway()


@pytest.fixture
def customer_ref(gateway):
    return gateway.customer_create(customer_id="cus_TEST", email="t@example.org")


def save(gateway, customer_ref, number):
    session = gateway.setup_start(customer_reference=customer_ref, return_url="https://t.test/")
    result = gateway.setup_submit(
        session_reference=session.reference, number=number, exp_month=12, exp_year=2090
    )
    assert result.status == SetupStatus.SUCCEEDED, result
    return result.card.token


def charge(gateway, customer_ref, token, key="key-1", amount=1500, off_session=True):
    return gateway.charge(
        request=ChargeRequest(
            customer_reference=customer_ref,
            payment_method_token=token,
            amount=amount,
            currency="USD",
            idempotency_key=key,
            off_session=off_session,
        )
    )


def test_the_registry_returns_the_configured_gateway_and_refuses_unknown_ones(settings):
    assert gateway_get().name == "sandbox"
    settings.PAYMENT_GATEWAY = "stripe"
    assert gateway_get().name == "stripe"
    settings.PAYMENT_GATEWAY = "paypal"
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="not available"):
        gateway_get()


def test_customer_create_is_idempotent_per_customer(gateway, customer_ref):
    assert gateway.customer_create(customer_id="cus_TEST", email="t@example.org") == customer_ref
    assert str(SandboxCustomer.objects.get()) == customer_ref


@pytest.mark.parametrize(
    ("number", "exp_year", "failure"),
    [
        ("4242424242424241", 2090, "invalid_number"),
        ("4242", 2090, "invalid_number"),
        (CARD_OK, 2020, "expired_card"),
        ("4111111111111111", 2090, "test_mode_live_card"),
        (CARD_DECLINED, 2090, "generic_decline"),
    ],
)
def test_setup_refuses_bad_expired_live_and_declined_cards(
    gateway, customer_ref, number, exp_year, failure
):
    session = gateway.setup_start(customer_reference=customer_ref, return_url="https://t.test/")
    with clock.frozen(NOW):
        result = gateway.setup_submit(
            session_reference=session.reference, number=number, exp_month=5, exp_year=exp_year
        )
    assert (result.status, result.failure_code, result.card) == (SetupStatus.FAILED, failure, None)
    assert gateway.setup_result(session_reference=session.reference).failure_code == failure
    assert not SandboxCard.objects.exists()


def test_a_failed_setup_can_be_retried_but_a_completed_one_cannot(gateway, customer_ref):
    session = gateway.setup_start(customer_reference=customer_ref, return_url="https://t.test/")
    assert session.url.endswith(f"/sandbox/setup/{session.reference}/")
    assert gateway.setup_result(session_reference=session.reference).status == SetupStatus.OPEN
    gateway.setup_submit(
        session_reference=session.reference, number=CARD_DECLINED, exp_month=1, exp_year=2090
    )
    result = gateway.setup_submit(
        session_reference=session.reference,
        number="4242 4242 4242 4242",
        exp_month=1,
        exp_year=2090,
    )
    assert result.status == SetupStatus.SUCCEEDED
    assert (result.card.brand, result.card.last4, result.customer_reference) == (
        "visa",
        "4242",
        customer_ref,
    )
    with pytest.raises(GatewayRequestRefused):
        gateway.setup_submit(
            session_reference=session.reference, number=CARD_OK, exp_month=1, exp_year=2090
        )
    assert str(SandboxSetupSession.objects.get()) == session.reference
    assert str(SandboxCard.objects.get()) == result.card.token


@pytest.mark.parametrize(
    ("number", "brand"), [("5555 5555 5555 4444", "mastercard"), ("3782-822463-10005", "amex")]
)
def test_other_brands_save_with_their_brand(gateway, customer_ref, number, brand):
    session = gateway.setup_start(customer_reference=customer_ref, return_url="https://t.test/")
    card = gateway.setup_submit(
        session_reference=session.reference, number=number, exp_month=1, exp_year=2090
    ).card
    assert (card.brand, card.last4) == (brand, number[-4:])


def test_an_unknown_setup_session_is_reported_as_failed(gateway):
    assert gateway.setup_result(session_reference="sbseti_nope").failure_code == "setup_not_found"


@pytest.mark.parametrize(
    ("number", "status", "code", "kind"),
    [
        (CARD_OK, ChargeStatus.SUCCEEDED, "", None),
        (CARD_INSUFFICIENT_FUNDS, ChargeStatus.FAILED, "insufficient_funds", DeclineKind.SOFT),
        (CARD_DECLINES_AFTER_ATTACH, ChargeStatus.FAILED, "generic_decline", DeclineKind.SOFT),
        (CARD_STOLEN, ChargeStatus.FAILED, "stolen_card", DeclineKind.HARD),
        (CARD_REQUIRES_AUTHENTICATION, ChargeStatus.REQUIRES_ACTION, "", None),
    ],
)
def test_each_test_card_charges_as_documented(gateway, customer_ref, number, status, code, kind):
    result = charge(gateway, customer_ref, save(gateway, customer_ref, number))
    assert (result.status, result.decline_code, result.decline_kind) == (status, code, kind)
    assert result.reference.startswith("sbch_")
    assert bool(result.action_url) is (status == ChargeStatus.REQUIRES_ACTION)


def test_a_card_of_another_customer_or_unknown_token_is_a_hard_failure(gateway, customer_ref):
    token = save(gateway, customer_ref, CARD_OK)
    result = charge(gateway, "sbcus_other", token)
    assert (result.status, result.decline_code, result.decline_kind) == (
        ChargeStatus.FAILED,
        "payment_method_not_found",
        DeclineKind.HARD,
    )


def test_the_same_key_and_request_returns_the_first_result_and_charges_once(gateway, customer_ref):
    token = save(gateway, customer_ref, CARD_OK)
    first = charge(gateway, customer_ref, token)
    assert charge(gateway, customer_ref, token) == first
    assert SandboxCharge.objects.count() == 1
    with pytest.raises(GatewayRequestRefused, match="different charge"):
        charge(gateway, customer_ref, token, amount=1600)
    with pytest.raises(GatewayRequestRefused, match="positive"):
        charge(gateway, customer_ref, token, key="zero", amount=0)


def test_a_timed_out_charge_happened_and_lookup_says_so(gateway, customer_ref):
    token = save(gateway, customer_ref, CARD_TIMES_OUT)
    with pytest.raises(GatewayUnavailable):
        charge(gateway, customer_ref, token, key="lost")
    assert gateway.charge_lookup(idempotency_key="lost").status == ChargeStatus.SUCCEEDED
    assert charge(gateway, customer_ref, token, key="lost").status == ChargeStatus.SUCCEEDED
    assert gateway.charge_lookup(idempotency_key="never-sent") is None


def test_authentication_changes_the_lookup_but_a_replay_still_answers_the_first_result(
    gateway, customer_ref
):
    token = save(gateway, customer_ref, CARD_REQUIRES_AUTHENTICATION)
    first = charge(gateway, customer_ref, token, key="3ds")
    with clock.frozen(NOW):
        payload, signature = gateway.action_complete(
            charge_reference=first.reference, authenticated=True
        )
        event = gateway.event_parse(payload=payload, signature=signature)
    assert event.type == "charge.succeeded"
    assert event.data["idempotency_key"] == "3ds"
    assert event.created_at == NOW
    assert gateway.charge_lookup(idempotency_key="3ds").status == ChargeStatus.SUCCEEDED
    assert charge(gateway, customer_ref, token, key="3ds").status == ChargeStatus.REQUIRES_ACTION
    with pytest.raises(GatewayRequestRefused):
        gateway.action_complete(charge_reference=first.reference, authenticated=True)


def test_abandoned_authentication_fails_the_charge(gateway, customer_ref):
    token = save(gateway, customer_ref, CARD_REQUIRES_AUTHENTICATION)
    first = charge(gateway, customer_ref, token, key="3ds")
    payload, signature = gateway.action_complete(
        charge_reference=first.reference, authenticated=False
    )
    assert gateway.event_parse(payload=payload, signature=signature).type == "charge.failed"
    lookup = gateway.charge_lookup(idempotency_key="3ds")
    assert (lookup.status, lookup.decline_code) == (ChargeStatus.FAILED, "authentication_required")


def refund(gateway, reference, amount, key, currency="USD"):
    return gateway.refund(
        request=RefundRequest(
            charge_reference=reference, amount=amount, currency=currency, idempotency_key=key
        )
    )


def test_refunds_are_idempotent_and_never_exceed_the_charge(gateway, customer_ref):
    reference = charge(gateway, customer_ref, save(gateway, customer_ref, CARD_OK)).reference
    first = refund(gateway, reference, 1000, "r1")
    assert (first.status, first.failure_code) == (RefundOutcome.SUCCEEDED, "")
    assert refund(gateway, reference, 1000, "r1") == first
    with pytest.raises(GatewayRequestRefused, match="different refund"):
        refund(gateway, reference, 999, "r1")
    assert refund(gateway, reference, 501, "r2").failure_code == "amount_too_large"
    assert refund(gateway, reference, 500, "r3", currency="EUR").failure_code == "currency_mismatch"
    assert refund(gateway, reference, 500, "r4").status == RefundOutcome.SUCCEEDED
    assert gateway.refund_lookup(idempotency_key="r4").status == RefundOutcome.SUCCEEDED
    assert gateway.refund_lookup(idempotency_key="nope") is None
    assert str(SandboxRefund.objects.first()).startswith("sbre_")


def test_refunds_of_uncaptured_or_unknown_charges_are_refused(gateway, customer_ref):
    declined = charge(gateway, customer_ref, save(gateway, customer_ref, CARD_STOLEN))
    assert refund(gateway, declined.reference, 100, "r1").failure_code == "charge_not_captured"
    with pytest.raises(GatewayRequestRefused):
        refund(gateway, "sbch_nope", 100, "r2")
    with pytest.raises(GatewayRequestRefused):
        refund(gateway, declined.reference, 0, "r3")


def test_transactions_are_listed_in_their_window_oldest_first(gateway, customer_ref):
    token = save(gateway, customer_ref, CARD_OK)
    with clock.frozen(NOW):
        first = charge(gateway, customer_ref, token, key="a")
    with clock.frozen(NOW + dt.timedelta(hours=1)):
        refund(gateway, first.reference, 100, "ra")
    with clock.frozen(NOW + dt.timedelta(days=2)):
        charge(gateway, customer_ref, token, key="b")
    listed = gateway.transactions_list(since=NOW, until=NOW + dt.timedelta(days=1))
    assert [(t.kind, t.idempotency_key, t.amount) for t in listed] == [
        (TransactionKind.CHARGE, "a", 1500),
        (TransactionKind.REFUND, "ra", 100),
    ]
    assert str(SandboxCharge.objects.get(idempotency_key="a")) == first.reference


def test_events_with_a_bad_signature_age_or_body_are_rejected(gateway):
    with clock.frozen(NOW):
        payload, signature = gateway.event_build(
            event_type="charge.succeeded", data={"reference": "x"}
        )
        assert gateway.event_parse(payload=payload, signature=signature).data == {"reference": "x"}
        with pytest.raises(EventRejected, match="does not match"):
            gateway.event_parse(payload=payload.replace(b'"x"', b'"y"'), signature=signature)
        for header in ("", "t=abc,v1=00", "v1=00", "t=1"):
            with pytest.raises(EventRejected, match="malformed"):
                gateway.event_parse(payload=payload, signature=header)
    with clock.frozen(NOW + dt.timedelta(minutes=6)), pytest.raises(EventRejected, match="too old"):
        gateway.event_parse(payload=payload, signature=signature)
    with clock.frozen(NOW):
        _body, header = gateway.event_build(event_type="x", data={})
        broken = json.dumps({"id": "e", "type": "x"}).encode()
        timestamp = header.split(",")[0]
        from tollgate.billing.gateways.sandbox.adapter import _signature

        forged_header = f"{timestamp},v1={_signature(broken, int(timestamp[2:]))}"
        with pytest.raises(EventRejected, match="not a sandbox event"):
            gateway.event_parse(payload=broken, signature=forged_header)


def test_decline_codes_are_classified_hard_or_soft():
    assert decline_kind_for("lost_card") == DeclineKind.HARD
    assert decline_kind_for("insufficient_funds") == DeclineKind.SOFT
