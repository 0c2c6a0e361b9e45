"""The catalog in the admin: a price's terms are fixed once saved; plans carry their trial rules."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tollgate.accounts.models import User
from tollgate.catalog.models import Plan, Price
from tollgate.catalog.services import catalog_load
from tollgate.core.errors import ValidationFailed

pytestmark = pytest.mark.django_db

CATALOG = {
    "products": [
        {
            "code": "app",
            "name": "App",
            "plans": [
                {
                    "code": "pro",
                    "name": "Pro",
                    "trial_days": 7,
                    "trial_requires_card": True,
                    "trial_end_without_card": "incomplete",
                    "prices": [{"amount": 2900, "currency": "USD", "interval": "month"}],
                }
            ],
        }
    ]
}


@pytest.fixture
def admin_client(client):
    admin = User.objects.create_user(
        email="admin@example.org",
        password="correct-horse-battery-staple-42",
        is_staff=True,
        is_superuser=True,
    )
    client.force_login(admin)
    return client


def _plan_form(plan: Plan, prices: list[dict[str, object]], initial: int) -> dict[str, object]:
    data: dict[str, object] = {
        "product": plan.product_id,
        "code": plan.code,
        "name": plan.name,
        "description": plan.description,
        "features": "{}",
        "limits": "{}",
        "trial_days": plan.trial_days,
        "trial_end_without_card": plan.trial_end_without_card,
        "display_order": plan.display_order,
        "active": "on",
        "prices-TOTAL_FORMS": len(prices),
        "prices-INITIAL_FORMS": initial,
        "prices-MIN_NUM_FORMS": 0,
        "prices-MAX_NUM_FORMS": 1000,
    }
    for index, price in enumerate(prices):
        for key, value in price.items():
            data[f"prices-{index}-{key}"] = value
    return data


def test_the_admin_cannot_change_a_saved_price_but_can_add_one_and_retire_the_old(admin_client):
    catalog_load(document=CATALOG)
    plan = Plan.objects.get(code="pro")
    old = plan.prices.get()
    data = _plan_form(
        plan,
        [
            # The old price, posted with another amount and unticked: only "active" changes.
            {
                "id": old.pk,
                "plan": plan.pk,
                "amount": 1,
                "currency": "EUR",
                "interval": "year",
                "interval_count": 3,
            },
            {
                "plan": plan.pk,
                "amount": 3900,
                "currency": "USD",
                "interval": "month",
                "interval_count": 1,
                "active": "on",
            },
        ],
        initial=1,
    )
    url = reverse("admin:catalog_plan_change", args=[plan.pk])
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    old.refresh_from_db()
    assert (old.amount, old.currency, old.interval, old.interval_count) == (2900, "USD", "month", 1)
    assert old.active is False
    assert Price.objects.get(plan=plan, active=True).amount == 3900


def test_plans_load_their_trial_rules_from_the_catalog_file():
    catalog_load(document=CATALOG)
    plan = Plan.objects.get(code="pro")
    assert (plan.trial_requires_card, plan.trial_end_without_card) == (True, "incomplete")


@pytest.mark.parametrize(
    ("key", "value"),
    [("trial_requires_card", "yes"), ("trial_end_without_card", "unpaid")],
)
def test_a_malformed_trial_rule_is_refused_with_its_place(key, value):
    document = {
        "products": [
            {
                **CATALOG["products"][0],
                "plans": [{**CATALOG["products"][0]["plans"][0], key: value}],
            }
        ]
    }
    with pytest.raises(ValidationFailed, match=key):
        catalog_load(document=document)
