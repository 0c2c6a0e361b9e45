"""Reported usage: counted once per event id, in the month its timestamp belongs to; a limit
nearly used up tells the customer and the product once."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail

from tollgate.core import clock
from tollgate.integrations.models import UsageEvent, UsageTotal

pytestmark = pytest.mark.django_db


def event(event_id, metric="api_calls_per_month", quantity=1, customer="u1", at=None):
    return {
        "id": event_id,
        "customer": customer,
        "metric": metric,
        "quantity": quantity,
        "timestamp": (at or clock.now()).isoformat(),
    }


def used(api, metric, customer="u1"):
    return api.get(f"/customers/{customer}/entitlements").json()["limits"][metric]["used"]


@pytest.fixture
def pro_customer(make_api_customer, subscribe):
    customer = make_api_customer("u1")
    subscribe(customer, "pro")
    return customer


def test_a_resent_event_is_counted_once(api, pro_customer):
    batch = {"events": [event("e1", quantity=5), event("e2", quantity=7)]}
    assert api.post("/usage", batch).json() == {"accepted": 2, "duplicates": 0}
    assert api.post("/usage", batch).json() == {"accepted": 0, "duplicates": 2}
    twice = {"events": [event("e3"), event("e3")]}
    assert api.post("/usage", twice).json() == {"accepted": 1, "duplicates": 1}
    assert used(api, "api_calls_per_month") == 13
    assert UsageEvent.objects.count() == 3


def test_level_metrics_go_up_and_down_and_never_reset(api, pro_customer):
    api.post("/usage", {"events": [event("p1", "projects", 3), event("p2", "projects", -1)]})
    assert used(api, "projects") == 2
    with clock.frozen(clock.now() + dt.timedelta(days=45)):
        assert used(api, "projects") == 2


def test_monthly_metrics_start_again_each_month_and_late_events_land_in_their_month(
    api, pro_customer
):
    start = clock.now()
    api.post("/usage", {"events": [event("c1", quantity=10, at=start)]})
    next_month = start + dt.timedelta(days=35)
    with clock.frozen(next_month):
        assert used(api, "api_calls_per_month") == 0
        late = event("c2", quantity=4, at=start + dt.timedelta(days=1))
        assert api.post("/usage", {"events": [late, event("c3", quantity=2)]}).json() == {
            "accepted": 2,
            "duplicates": 0,
        }
        assert used(api, "api_calls_per_month") == 2
    totals = sorted(
        UsageTotal.objects.filter(metric="api_calls_per_month").values_list("quantity", flat=True)
    )
    assert totals == [2, 14]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (event("x", metric="nope"), "events.0.metric"),
        (event("x", quantity=-1), "events.0.quantity"),
        (event("has space"), "events.0.id"),
        ({**event("x"), "timestamp": "2026-01-01T00:00:00"}, "events.0.timestamp"),
        (event("x", at=clock.now() + dt.timedelta(days=1)), "events.0.timestamp"),
    ],
)
def test_an_invalid_event_refuses_the_whole_batch(api, pro_customer, bad, field):
    response = api.post("/usage", {"events": [bad, event("fine")]})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == field
    assert UsageEvent.objects.count() == 0


def test_a_batch_is_at_most_a_thousand_events_and_names_known_customers(api, pro_customer):
    too_many = {"events": [event(f"e{n}") for n in range(1001)]}
    assert api.post("/usage", too_many).status_code == 422
    assert api.post("/usage", {"events": []}).status_code == 422
    unknown = api.post("/usage", {"events": [event("e1", customer="nobody")]})
    assert unknown.status_code == 404


def test_crossing_eighty_percent_emails_the_customer_and_tells_the_product_once(api, pro_customer):
    def near_limit_mail():
        return [m for m in mail.outbox if "of your 1,000" in m.subject]

    api.post("/usage", {"events": [event("c1", quantity=700)]})
    assert near_limit_mail() == []
    api.post("/usage", {"events": [event("c2", quantity=150)]})  # 850 of 1000
    (message,) = near_limit_mail()
    assert message.to == [pro_customer.email]
    assert message.subject == "You have used 850 of your 1,000 API calls"
    api.post("/usage", {"events": [event("c3", quantity=100)]})
    assert len(near_limit_mail()) == 1
    from tollgate.core.models import OutboxMessage

    published = OutboxMessage.objects.filter(
        kind="events.published", payload__type="usage.limit_near"
    )
    assert published.count() == 1
    assert published.get().payload["extra"] == {
        "metric": "api_calls_per_month",
        "limit": 1000,
        "used": 850,
    }


def test_the_dashboard_prompts_an_upgrade_from_reported_usage(api, pro_customer, client, committed):
    api.post("/usage", {"events": [event("c1", quantity=900)]})
    client.force_login(pro_customer.user)
    page = client.get("/billing/").content.decode()
    offer = page[page.index("You're close to your") :][:200]
    assert "Business raises it to 100" in offer
