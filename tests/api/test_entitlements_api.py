"""The entitlement check on the product's hot path, and the whole picture of a customer's plan."""

from __future__ import annotations

import json

import pytest
from django.db import transaction

from tests.billing.conftest import CARD_DECLINES_AFTER_ATTACH, add_card, new_key
from tollgate.billing import services
from tollgate.billing.locks import lock_subscription
from tollgate.billing.states import SubscriptionStatus
from tollgate.billing.steps.subscriptions import subscription_move_locked
from tollgate.core import clock

pytestmark = pytest.mark.django_db


def check(api, customer, feature, quantity=None):
    body = {"customer": customer, "feature": feature}
    if quantity is not None:
        body["quantity"] = quantity
    response = api.post("/entitlements/check", body)
    assert response.status_code == 200, response.content
    return response.json()


def report(api, customer, metric, quantity, event_id, timestamp=None):
    event = {
        "id": event_id,
        "customer": customer,
        "metric": metric,
        "quantity": quantity,
        "timestamp": (timestamp or clock.now()).isoformat(),
    }
    return api.post("/usage", {"events": [event]})


def test_without_a_subscription_nothing_is_allowed(api, api_catalog, make_api_customer):
    make_api_customer("u1")
    assert check(api, "u1", "api_access") == {
        "allowed": False,
        "reason": "no_subscription",
        "remaining": None,
        "upgrade": None,
    }
    view = api.get("/customers/u1/entitlements").json()
    assert (view["plan"], view["status"], view["features"], view["limits"]) == (None, None, {}, {})


def test_a_feature_of_the_plan_is_allowed_and_one_it_lacks_comes_with_an_offer(
    api, make_api_customer, subscribe, plan_price
):
    subscribe(make_api_customer("u1"), "pro")
    assert check(api, "u1", "api_access")["allowed"] is True
    refused = check(api, "u1", "sso")
    assert (refused["allowed"], refused["reason"]) == (False, "feature_not_in_plan")
    assert refused["upgrade"] == {
        "reason": "feature",
        "key": "sso",
        "plan": "business",
        "plan_name": "Business",
        "price": plan_price("business").public_id,
        "amount": 9900,
        "currency": "USD",
        "interval": "month",
        "interval_count": 1,
        "limit": None,
    }
    assert check(api, "u1", "no_such_feature")["reason"] == "feature_not_in_plan"
    bad = api.post("/entitlements/check", {"customer": "u1", "feature": "bad key!"})
    assert bad.status_code == 422


def test_limits_count_reported_usage_and_refuse_past_the_limit(api, make_api_customer, subscribe):
    subscribe(make_api_customer("u1"), "pro")  # projects: 10
    assert check(api, "u1", "projects") == {
        "allowed": True,
        "reason": None,
        "remaining": 10,
        "upgrade": None,
    }
    assert report(api, "u1", "projects", 7, "p1").json() == {"accepted": 1, "duplicates": 0}
    assert check(api, "u1", "projects", 3)["allowed"] is True
    near = check(api, "u1", "projects", 1)
    assert (near["allowed"], near["remaining"], near["upgrade"]["plan"]) == (True, 3, "business")
    refused = check(api, "u1", "projects", 4)
    assert (refused["allowed"], refused["reason"], refused["remaining"]) == (
        False,
        "limit_reached",
        3,
    )
    assert refused["upgrade"]["limit"] == 100
    assert check(api, "u1", "seats", 10_000)["allowed"] is True  # unlimited (-1 in the catalog)


def test_a_warm_check_makes_no_database_query(
    api, make_api_customer, subscribe, django_assert_num_queries
):
    subscribe(make_api_customer("u1"), "pro")
    report(api, "u1", "projects", 1, "p1")
    check(api, "u1", "projects")
    check(api, "u1", "api_access")
    with django_assert_num_queries(0):
        check(api, "u1", "projects")
        check(api, "u1", "api_access")


@pytest.mark.redis
def test_a_warm_check_costs_two_redis_round_trips(
    api, make_api_customer, subscribe, redis_round_trips
):
    subscribe(make_api_customer("u1"), "pro")
    report(api, "u1", "projects", 1, "p1")
    check(api, "u1", "projects")
    redis_round_trips[0] = 0
    assert check(api, "u1", "projects")["remaining"] == 9
    # The key with the customer; the rate-limit count with the entitlements and the usage.
    assert redis_round_trips[0] == 2


def test_a_check_with_a_body_it_cannot_read_is_refused_as_before(api, make_api_customer):
    make_api_customer("u1")
    for body in ([], "u1", {"customer": ["u1"], "feature": "sso"}, {"customer": "u 1"}):
        assert api.post("/entitlements/check", body).status_code == 422
    big = {"customer": "u1", "feature": "sso", "padding": "x" * 5000}
    assert check(api, "u1", "sso")["allowed"] is False
    assert api.post("/entitlements/check", big).json()["reason"] == "no_subscription"
    bad_key = api.post("/entitlements/check", {"customer": "u1", "feature": "sso"}, key="tg_x")
    assert bad_key.status_code == 401


def test_a_plan_change_shows_in_the_next_check(
    api, make_api_customer, subscribe, plan_price, committed
):
    subscription = subscribe(make_api_customer("u1"), "pro")
    assert check(api, "u1", "sso")["allowed"] is False
    with committed():
        services.subscription_change_price(
            subscription=subscription, price=plan_price("business"), idempotency_key=new_key()
        )
    assert check(api, "u1", "sso")["allowed"] is True


def test_an_unpaid_subscription_is_refused_as_past_due(
    api, make_api_customer, plan_price, committed
):
    customer = make_api_customer("u1")
    with committed():
        add_card(customer)
        subscription = services.subscription_start(
            customer=customer, price=plan_price("pro"), idempotency_key=new_key()
        )
    # The dunning schedule ran out (the engine's own transitions).
    with committed(), transaction.atomic():
        locked = lock_subscription(subscription).subscription
        subscription_move_locked(subscription=locked, target=SubscriptionStatus.PAST_DUE)
        subscription_move_locked(subscription=locked, target=SubscriptionStatus.UNPAID)
    assert check(api, "u1", "api_access")["reason"] == "past_due"


def test_an_incomplete_subscription_is_no_subscription(
    api, make_api_customer, plan_price, committed
):
    customer = make_api_customer("u1")
    with committed():
        add_card(customer, CARD_DECLINES_AFTER_ATTACH)
        services.subscription_start(
            customer=customer, price=plan_price("pro"), idempotency_key=new_key()
        )
    assert check(api, "u1", "api_access")["reason"] == "no_subscription"


def test_the_entitlements_show_plan_features_limits_use_and_offers(
    api, make_api_customer, subscribe
):
    customer = make_api_customer("u1")
    subscription = subscribe(customer, "pro")
    report(api, "u1", "api_calls_per_month", 850, "c1")
    view = api.get("/customers/u1/entitlements").json()
    assert (view["customer"], view["plan"], view["status"], view["subscription"]) == (
        customer.public_id,
        "pro",
        "active",
        subscription.public_id,
    )
    assert view["features"] == {"api_access": True, "sso": False}
    assert view["limits"] == {
        "api_calls_per_month": {"limit": 1000, "used": 850, "remaining": 150},
        "projects": {"limit": 10, "used": 0, "remaining": 10},
        "seats": {"limit": None, "used": 0, "remaining": None},
    }
    assert sorted((o["reason"], o["key"]) for o in view["upgrade"]) == [
        ("feature", "sso"),
        ("limit", "api_calls_per_month"),
    ]
    assert view["current_period_end"].endswith("Z")


def test_a_catalog_change_reaches_the_next_check(api, make_api_customer, subscribe, committed):
    from tests.api.conftest import API_CATALOG
    from tollgate.catalog.services import catalog_load

    subscribe(make_api_customer("u1"), "pro")
    assert check(api, "u1", "sso")["allowed"] is False  # cached now
    document = json.loads(json.dumps(API_CATALOG))
    document["products"][0]["plans"][1]["features"]["sso"] = True
    with committed():
        catalog_load(document=document)
    assert check(api, "u1", "sso")["allowed"] is True
