"""A price the configured payment gateway could not charge exactly is refused when it is made:
from a catalog file (a clear message naming its place) and in the admin (a form error)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from tollgate.accounts.models import User
from tollgate.catalog.models import Plan, Price, Product
from tollgate.catalog.services import catalog_load
from tollgate.core.errors import ValidationFailed

pytestmark = pytest.mark.django_db


def catalog(amount: int, currency: str) -> dict[str, object]:
    return {
        "products": [
            {
                "code": "app",
                "name": "App",
                "plans": [
                    {
                        "code": "pro",
                        "name": "Pro",
                        "prices": [
                            {"amount": 2900, "currency": "USD", "interval": "month"},
                            {"amount": amount, "currency": currency, "interval": "year"},
                        ],
                    }
                ],
            }
        ]
    }


@pytest.fixture
def stripe_configured(settings):
    settings.PAYMENT_GATEWAY = "stripe"


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [(5125, "KWD", "5.125 KWD"), (100050, "MGA", "1,000.50 MGA"), (1235, "IQD", "1.235 IQD")],
)
def test_a_price_stripe_cannot_charge_exactly_is_refused_whole_with_its_place(
    stripe_configured, amount, currency, shown
):
    with pytest.raises(ValidationFailed) as excinfo:
        catalog_load(document=catalog(amount, currency))
    message = excinfo.value.message
    assert "products[0].plans[0].prices[1]" in message
    assert shown in message
    assert "cannot charge" in message
    assert excinfo.value.details == {"field": "products[0].plans[0].prices[1].amount"}
    assert not Product.objects.exists()


@pytest.mark.parametrize(
    ("amount", "currency"), [(5120, "KWD"), (100000, "MGA"), (1000, "ISK"), (5000, "UGX")]
)
def test_a_price_stripe_can_charge_exactly_is_loaded(stripe_configured, amount, currency):
    catalog_load(document=catalog(amount, currency))
    assert Price.objects.filter(amount=amount, currency=currency).exists()


def test_the_sandbox_takes_any_amount():
    catalog_load(document=catalog(5125, "KWD"))
    assert Price.objects.filter(amount=5125, currency="KWD").exists()


def test_the_command_says_which_price_cannot_be_charged(stripe_configured, tmp_path):
    plans = tmp_path / "plans.toml"
    plans.write_text(
        '[[products]]\ncode = "app"\nname = "App"\n\n'
        '[[products.plans]]\ncode = "pro"\nname = "Pro"\n\n'
        '[[products.plans.prices]]\namount = 5125\ncurrency = "KWD"\ninterval = "month"\n'
    )
    with pytest.raises(CommandError, match=r"prices\[0\].*5\.125 KWD"):
        call_command("catalog_load", str(plans))


def test_the_admin_refuses_a_new_price_stripe_cannot_charge_with_a_form_error(
    stripe_configured, client
):
    admin = User.objects.create_user(
        email="admin@example.org",
        password="correct-horse-battery-staple-42",
        is_staff=True,
        is_superuser=True,
    )
    client.force_login(admin)
    catalog_load(document=catalog(5120, "KWD"))
    plan = Plan.objects.get(code="pro")
    prices = list(plan.prices.order_by("pk"))
    data: dict[str, object] = {
        "product": plan.product_id,
        "code": plan.code,
        "name": plan.name,
        "description": "",
        "features": "{}",
        "limits": "{}",
        "trial_days": 0,
        "trial_end_without_card": "",
        "display_order": plan.display_order,
        "active": "on",
        "prices-TOTAL_FORMS": 3,
        "prices-INITIAL_FORMS": 2,
        "prices-MIN_NUM_FORMS": 0,
        "prices-MAX_NUM_FORMS": 1000,
    }
    rows = [
        *({"id": price.pk, "plan": plan.pk, "active": "on"} for price in prices),
        {"plan": plan.pk, "amount": 100050, "currency": "MGA", "interval": "month"},
    ]
    for index, row in enumerate(rows):
        row.setdefault("interval_count", 1)
        for key, value in row.items():
            data[f"prices-{index}-{key}"] = value
    data["prices-2-active"] = "on"

    response = client.post(reverse("admin:catalog_plan_change", args=[plan.pk]), data)

    assert response.status_code == 200
    assert "cannot charge 1,000.50 MGA exactly" in response.content.decode()
    assert not Price.objects.filter(currency="MGA").exists()
