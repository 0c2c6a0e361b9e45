import pytest

from tests.billing.conftest import CARD_DECLINED, CARD_OK, CARD_STOLEN, add_card
from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.errors import PaymentMethodNotFound
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.billing.models import Customer, PaymentMethod
from tollgate.billing.selectors import payment_method_default

pytestmark = pytest.mark.django_db


def test_customer_is_created_once_per_account_and_audited(customer):
    again = services.customer_get_or_create(user=customer.user)
    assert again.pk == customer.pk
    assert customer.public_id.startswith("cus_")
    assert customer.email == "payer@example.org"
    assert len(customer.invoice_prefix) == 8
    assert customer.next_invoice_sequence == 1
    assert (
        AuditEvent.objects.filter(
            action="billing.customer_created", target_id=customer.public_id
        ).count()
        == 1
    )


def test_card_is_saved_as_token_brand_last4_and_expiry_only(customer):
    method = add_card(customer, CARD_OK)
    assert method.public_id.startswith("pm_")
    assert (method.brand, method.last4, method.exp_month, method.exp_year) == (
        "visa",
        "4242",
        12,
        2099,
    )
    assert method.gateway == "sandbox"
    assert method.gateway_token.startswith("sbpm_")
    assert method.is_default
    assert str(method) == "visa •••• 4242"
    customer.refresh_from_db()
    assert customer.gateway == "sandbox"
    assert customer.gateway_reference.startswith("sbcus_")
    event = AuditEvent.objects.get(action="billing.payment_method_attached")
    assert event.details["last4"] == "4242"


def test_a_new_card_becomes_the_default(customer):
    first = add_card(customer, CARD_OK)
    second = add_card(customer, CARD_STOLEN)
    first.refresh_from_db()
    assert not first.is_default
    assert second.is_default
    assert payment_method_default(customer=customer) == second


def test_attaching_the_same_setup_twice_returns_the_same_card(customer):
    session = services.payment_method_setup_start(customer=customer, return_url="https://t.test/")
    SandboxGateway().setup_submit(
        session_reference=session.reference, number=CARD_OK, exp_month=1, exp_year=2090
    )
    first = services.payment_method_attach(customer=customer, setup_reference=session.reference)
    second = services.payment_method_attach(customer=customer, setup_reference=session.reference)
    assert first == second
    assert PaymentMethod.objects.count() == 1


def test_a_card_declined_at_setup_is_not_attached(customer):
    session = services.payment_method_setup_start(customer=customer, return_url="https://t.test/")
    SandboxGateway().setup_submit(
        session_reference=session.reference, number=CARD_DECLINED, exp_month=1, exp_year=2090
    )
    with pytest.raises(PaymentMethodNotFound) as refused:
        services.payment_method_attach(customer=customer, setup_reference=session.reference)
    assert refused.value.details == {"failure": "generic_decline"}
    assert not PaymentMethod.objects.exists()


def test_a_setup_session_of_another_customer_is_refused(customer, make_customer):
    other = make_customer("other@example.org")
    session = services.payment_method_setup_start(customer=other, return_url="https://t.test/")
    SandboxGateway().setup_submit(
        session_reference=session.reference, number=CARD_OK, exp_month=1, exp_year=2090
    )
    services.payment_method_setup_start(customer=customer, return_url="https://t.test/")
    with pytest.raises(PaymentMethodNotFound):
        services.payment_method_attach(customer=customer, setup_reference=session.reference)


def test_the_gateway_customer_is_created_once(customer):
    services.payment_method_setup_start(customer=customer, return_url="https://t.test/")
    reference = Customer.objects.get(pk=customer.pk).gateway_reference
    services.payment_method_setup_start(customer=customer, return_url="https://t.test/")
    assert Customer.objects.get(pk=customer.pk).gateway_reference == reference


def test_customer_str_is_its_public_id(customer):
    assert str(customer) == customer.public_id
    assert isinstance(customer.user, User)


def test_a_detached_card_is_forgotten_at_the_gateway_and_never_default(customer):
    from tollgate.billing.gateways.sandbox.models import SandboxCard

    method = add_card(customer, CARD_OK)
    detached = services.payment_method_detach(payment_method=method)
    assert detached.detached_at is not None
    assert not detached.is_default
    assert payment_method_default(customer=customer) is None
    assert SandboxCard.objects.get(token=method.gateway_token).detached_at is not None
    assert services.payment_method_detach(payment_method=method) == detached
    assert AuditEvent.objects.filter(action="billing.payment_method_detached").count() == 1
