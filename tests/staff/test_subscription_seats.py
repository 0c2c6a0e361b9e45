"""Staff change a per-seat subscription's seats from the customer's page: once per form, audited
with the staff account, refusals on the form."""

from __future__ import annotations

import pytest

from tests.billing.conftest import add_card, new_key
from tests.billing.services.test_seats import SEATS_CATALOG
from tests.staff.test_actions import form_token
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.models import Invoice, PaymentAttempt
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(customer):
    catalog_load(document=SEATS_CATALOG)
    add_card(customer)
    return services.subscription_start(
        customer=customer,
        price=Price.objects.get(plan__code="team", active=True),
        trial=False,
        seats=2,
        idempotency_key=new_key(),
    )


def test_staff_add_seats_once_per_form(staff_client, staff, team):
    page = staff_client.get(f"/staff/customers/{team.customer.public_id}/").content.decode()
    assert f"/staff/subscriptions/{team.public_id}/seats/" in page
    url = f"/staff/subscriptions/{team.public_id}/seats/"
    data = {"form_token": form_token(staff_client.get(url)), "seats": "4"}
    assert staff_client.post(url, data).status_code == 302
    assert staff_client.post(url, data).status_code == 302  # the same form again: once
    team.refresh_from_db()
    assert team.seats == 4
    invoice = Invoice.objects.get(billing_reason="subscription_update")
    assert PaymentAttempt.objects.get(invoice=invoice).off_session is True
    event = AuditEvent.objects.get(action="billing.subscription_seats_changed")
    assert event.actor == staff


@pytest.mark.parametrize(("seats", "error"), [("0", "greater than or equal to 1"), ("x", "whole")])
def test_seats_that_cannot_be_are_refused_on_the_form(staff_client, team, seats, error):
    url = f"/staff/subscriptions/{team.public_id}/seats/"
    response = staff_client.post(
        url, {"form_token": form_token(staff_client.get(url)), "seats": seats}
    )
    assert response.status_code == 422
    assert error in response.text
