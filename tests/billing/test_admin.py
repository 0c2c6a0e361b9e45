import pytest
from django.urls import reverse

from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.billing import services
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.billing.inbound import inbox
from tollgate.billing.models import (
    Customer,
    InboundEvent,
    Invoice,
    LedgerTransaction,
    PaymentAttempt,
    PaymentMethod,
    Refund,
    Subscription,
)

pytestmark = pytest.mark.django_db
MODELS = [
    Customer,
    PaymentMethod,
    Subscription,
    Invoice,
    PaymentAttempt,
    Refund,
    LedgerTransaction,
    InboundEvent,
]


@pytest.fixture
def staff_client(client, customer, price, staff):
    add_card(customer, CARD_OK)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    services.refund_issue(
        payment=PaymentAttempt.objects.get(),
        amount=100,
        reason=Refund.Reason.DUPLICATE,
        note="dup",
        actor=staff,
        idempotency_key="k",
    )
    payload, signature = SandboxGateway().event_build(
        event_type="charge.succeeded", data={"reference": "ch_unknown"}
    )
    inbox.event_receive(gateway="sandbox", payload=payload, signature=signature)
    staff.is_superuser = True
    staff.save(update_fields=["is_superuser"])
    client.force_login(staff)
    return client


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_staff_can_list_and_read_but_not_change_billing_records(staff_client, model):
    opts = model._meta
    listing = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert listing.status_code == 200
    record = model.objects.first()
    detail = staff_client.get(
        reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[record.pk])
    )
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content
    assert (
        staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add")).status_code
        == 403
    )
