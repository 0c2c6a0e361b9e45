"""The operator changes a per-seat subscription's seats through the API: more are charged now
(off session), fewer wait for the period end; refusals in the house error format; a repeated
request with the same Idempotency-Key changes and charges once."""

from __future__ import annotations

import pytest

from tests.billing.conftest import add_card, new_key
from tests.billing.services.test_seats import SEATS_CATALOG
from tollgate.billing import services
from tollgate.billing.models import Invoice, PaymentAttempt
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load

pytestmark = pytest.mark.django_db


@pytest.fixture
def team_subscription(make_api_customer, committed):
    catalog_load(document=SEATS_CATALOG)
    customer = make_api_customer("team_1")
    with committed():
        add_card(customer)
        return services.subscription_start(
            customer=customer,
            price=Price.objects.get(plan__code="team", active=True),
            trial=False,
            seats=3,
            idempotency_key=new_key(),
        )


def test_more_seats_through_the_api_are_charged_now_off_session(api, team_subscription):
    path = f"/subscriptions/{team_subscription.public_id}/seats"
    first = api.post(path, {"seats": 5}, headers={"Idempotency-Key": "seats-5"})
    again = api.post(path, {"seats": 5}, headers={"Idempotency-Key": "seats-5"})
    assert first.status_code == again.status_code == 200
    assert first.json()["seats"] == again.json()["seats"] == 5
    assert again["Idempotent-Replayed"] == "true"
    invoice = Invoice.objects.get(billing_reason="subscription_update")
    assert invoice.status == "paid"
    assert PaymentAttempt.objects.get(invoice=invoice).off_session is True


def test_fewer_seats_through_the_api_wait_for_the_period_end(api, team_subscription):
    body = api.post(f"/subscriptions/{team_subscription.public_id}/seats", {"seats": 2}).json()
    assert (body["seats"], body["scheduled_seats"]) == (3, 2)
    assert api.get(f"/subscriptions/{team_subscription.public_id}").json()["scheduled_seats"] == 2


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"seats": 0}, 422, "validation_failed"),
        ({"seats": "4"}, 422, "validation_failed"),
        ({"seats": True}, 422, "validation_failed"),
        ({}, 422, "validation_failed"),
    ],
)
def test_seats_that_cannot_be_are_refused(api, team_subscription, body, status, code):
    response = api.post(f"/subscriptions/{team_subscription.public_id}/seats", body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_a_flat_price_or_an_unknown_subscription_is_refused(api, make_api_customer, subscribe):
    flat = subscribe(make_api_customer("flat_1"), "pro")
    refused = api.post(f"/subscriptions/{flat.public_id}/seats", {"seats": 2})
    assert refused.status_code == 422
    assert "not priced per seat" in refused.json()["error"]["message"]
    assert api.post("/subscriptions/sub_nothing/seats", {"seats": 2}).status_code == 404
