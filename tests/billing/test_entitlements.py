import pytest

from tests.billing.conftest import CARD_DECLINES_AFTER_ATTACH, CARD_OK, add_card, new_key
from tollgate.billing import services
from tollgate.billing.entitlements import Entitlements, entitlements_for, upgrade_offers
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load

pytestmark = pytest.mark.django_db

CATALOG = {
    "products": [
        {
            "code": "app",
            "name": "App",
            "plans": [
                {
                    "code": "starter",
                    "name": "Starter",
                    "trial_days": 14,
                    "features": {"api": False, "sso": False},
                    "limits": {"projects": 3, "seats": 1},
                    "prices": [
                        {"amount": 900, "currency": "USD", "interval": "month"},
                        {"amount": 9000, "currency": "USD", "interval": "year"},
                    ],
                },
                {
                    "code": "pro",
                    "name": "Pro",
                    "features": {"api": True, "sso": False},
                    "limits": {"projects": 25, "seats": 10},
                    "prices": [
                        {"amount": 2900, "currency": "USD", "interval": "month"},
                        {"amount": 24000, "currency": "USD", "interval": "year"},
                    ],
                },
                {
                    "code": "business",
                    "name": "Business",
                    "features": {"api": True, "sso": True},
                    "limits": {"projects": 500, "seats": 100},
                    "prices": [
                        {"amount": 9900, "currency": "USD", "interval": "month"},
                        {"amount": 9900, "currency": "EUR", "interval": "month"},
                    ],
                },
                {
                    "code": "free",
                    "name": "Free",
                    "prices": [{"amount": 0, "currency": "USD", "interval": "month"}],
                },
            ],
        }
    ]
}


@pytest.fixture
def catalog(db):
    """Replaces the shared catalog: plans here carry features and limits."""
    catalog_load(document=CATALOG)


def test_no_subscription_grants_nothing(catalog, customer):
    entitlements = entitlements_for(user=customer.user)
    assert entitlements == Entitlements()
    assert not entitlements.has("api")
    assert entitlements.limit("projects") == 0


def test_a_trial_grants_its_plans_features_and_limits(catalog, customer, price):
    services.subscription_start(
        customer=customer, price=price("starter"), idempotency_key=new_key()
    )
    entitlements = entitlements_for(user=customer.user)
    assert (entitlements.plan_code, entitlements.status, entitlements.currency) == (
        "starter",
        "trialing",
        "USD",
    )
    assert entitlements.limit("projects") == 3
    assert not entitlements.has("api")


def test_a_change_invalidates_the_cached_entitlements_after_commit(
    catalog, customer, price, django_capture_on_commit_callbacks
):
    add_card(customer, CARD_OK)
    with django_capture_on_commit_callbacks(execute=True):
        subscription = services.subscription_start(
            customer=customer, price=price("starter"), trial=False, idempotency_key=new_key()
        )
    assert entitlements_for(user=customer.user).plan_code == "starter"
    with django_capture_on_commit_callbacks(execute=True):
        services.subscription_change_price(
            subscription=subscription, price=price("pro"), idempotency_key=new_key()
        )
    assert entitlements_for(user=customer.user).has("api")
    with django_capture_on_commit_callbacks(execute=True):
        services.subscription_cancel(
            subscription=subscription, at_period_end=False, idempotency_key=new_key()
        )
    assert entitlements_for(user=customer.user) == Entitlements()


def test_without_the_commit_the_cache_still_answers(catalog, customer, price):
    services.subscription_start(
        customer=customer, price=price("starter"), idempotency_key=new_key()
    )
    cached = entitlements_for(user=customer.user)
    services.subscription_cancel(
        subscription=customer.subscriptions.get(), at_period_end=False, idempotency_key=new_key()
    )
    assert entitlements_for(user=customer.user) is not None
    assert (
        entitlements_for(user=customer.user).plan_code == cached.plan_code
    )  # outbox not delivered


def test_an_incomplete_subscription_grants_nothing(catalog, customer, price):
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    assert entitlements_for(user=customer.user).plan_code == ""


def test_offers_name_the_cheapest_plan_unlocking_each_missing_feature(catalog, customer, price):
    services.subscription_start(
        customer=customer, price=price("starter"), idempotency_key=new_key()
    )
    offers = {offer.key: offer for offer in upgrade_offers(user=customer.user)}
    assert set(offers) == {"api", "sso"}
    # A monthly customer is offered Pro monthly, though its yearly price is cheaper per month.
    assert (offers["api"].plan_code, offers["api"].amount, offers["api"].interval) == (
        "pro",
        2900,
        "month",
    )
    assert (offers["sso"].plan_code, offers["sso"].currency) == ("business", "USD")


def test_a_yearly_customer_is_offered_the_yearly_price(catalog, customer, price):
    services.subscription_start(
        customer=customer, price=price("starter", "year"), idempotency_key=new_key()
    )
    offers = {offer.key: offer for offer in upgrade_offers(user=customer.user)}
    assert (offers["api"].plan_code, offers["api"].amount, offers["api"].interval) == (
        "pro",
        24000,
        "year",
    )
    # Business has no yearly price: its monthly one is offered rather than nothing.
    assert (offers["sso"].plan_code, offers["sso"].interval) == ("business", "month")


def test_offers_appear_for_limits_within_twenty_percent_of_use(catalog, customer, price):
    add_card(customer, CARD_OK)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    offers = upgrade_offers(user=customer.user, usage={"projects": 19, "seats": 8})
    assert [(o.key, o.plan_code, o.limit) for o in offers if o.reason == "limit"] == [
        ("seats", "business", 100)
    ]
    offers = upgrade_offers(user=customer.user, usage={"projects": 20})
    assert [(o.key, o.plan_code, o.limit) for o in offers if o.reason == "limit"] == [
        ("projects", "business", 500)
    ]


def test_nothing_is_offered_beyond_the_top_plan(catalog, customer, price):
    add_card(customer, CARD_OK)
    business = Price.objects.get(plan__code="business", currency="USD")
    services.subscription_start(customer=customer, price=business, idempotency_key=new_key())
    assert upgrade_offers(user=customer.user, usage={"seats": 100, "unknown": 5}) == []


def test_cached_entitlements_cost_no_query(catalog, customer, price, django_assert_num_queries):
    services.subscription_start(
        customer=customer, price=price("starter"), idempotency_key=new_key()
    )
    entitlements_for(user=customer.user)
    with django_assert_num_queries(0):
        assert entitlements_for(user=customer.user).plan_code == "starter"
