"""Pages show the catalog's names for features and limits, never its keys, with numbers written
for the reader (2,000,000; Unlimited), at no extra query once the names are cached."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from tests.billing.conftest import add_card, new_key
from tollgate.billing import services
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load
from tollgate.core import clock
from tollgate.integrations.customers import customer_ref_of
from tollgate.integrations.usage import UsageReport, usage_record
from tollgate.web.templatetags.tollgate import limit_value

pytestmark = pytest.mark.django_db

RAW_KEYS = re.compile(r"\b(Sso|Api access|Api calls|api_access|api_calls_per_month|storage_gb)\b")


def _plan(code: str, order: int, amount: int, features, limits, trial_days: int = 0):
    return {
        "code": code,
        "name": code.capitalize(),
        "display_order": order,
        "trial_days": trial_days,
        "features": features,
        "limits": limits,
        "prices": [{"amount": amount, "currency": "USD", "interval": "month"}],
    }


CATALOG = {
    "products": [
        {
            "code": "app",
            "name": "App",
            "plans": [
                _plan(
                    "starter",
                    1,
                    900,
                    {"api_access": False, "sso": False},
                    {"projects": 3, "api_calls_per_month": 0},
                    trial_days=14,
                ),
                _plan(
                    "pro",
                    2,
                    2900,
                    {"api_access": True, "sso": False},
                    {"projects": 25, "api_calls_per_month": 100000},
                ),
                _plan(
                    "business",
                    3,
                    9900,
                    {"api_access": True, "sso": True},
                    {"projects": -1, "api_calls_per_month": 2000000, "storage_gb": 500},
                ),
            ],
        }
    ],
    "features": [{"code": "api_access", "name": "API access"}, {"code": "sso", "name": "SSO"}],
    "metrics": [
        {"code": "projects", "name": "Projects", "reset": "level"},
        {"code": "api_calls_per_month", "name": "API calls per month"},
        {"code": "storage_gb", "name": "Storage", "unit": "GB", "reset": "level"},
    ],
}


@pytest.fixture
def named_catalog(db):
    catalog_load(document=CATALOG)


def _price(plan: str) -> Price:
    return Price.objects.get(plan__code=plan, active=True)


def _text(response) -> str:
    """The page's text as a reader sees it: tags dropped, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


def test_pricing_shows_names_formatted_numbers_units_and_unlimited(client, named_catalog):
    page = _text(client.get("/pricing/"))
    assert "API calls per month: 2,000,000" in page
    assert "API calls per month: 100,000" in page
    assert "Projects: Unlimited" in page
    assert "Storage: 500 GB" in page
    assert "SSO" in page
    assert "API access" in page
    assert RAW_KEYS.findall(page) == []


@pytest.mark.parametrize(
    ("language", "written"),
    [("en", "2,000,000"), ("de", "2.000.000"), ("fr", "2\xa0000\xa0000")],
)
def test_limits_are_grouped_the_way_the_active_language_writes_numbers(
    named_catalog, language, written
):
    with translation.override(language):
        assert limit_value(2000000, "api_calls_per_month") == written
        assert limit_value(500, "storage_gb") == "500 GB"
        assert limit_value(-1, "projects") == "Unlimited"


def test_pricing_lists_every_plan_in_the_catalog_order(client, named_catalog):
    page = _text(client.get("/pricing/"))
    business = page[page.index("Business") :]
    assert re.search(
        r"Projects: Unlimited API calls per month: 2,000,000 Storage: 500 GB API access SSO",
        business,
    ), business


def test_pricing_costs_no_query_per_plan_or_key(
    client, named_catalog, django_assert_num_queries, django_capture_on_commit_callbacks
):
    with django_assert_num_queries(4):  # plans, prices; the names once: features, metrics
        client.get("/pricing/")
    with django_assert_num_queries(0):  # the plans and the names come from the cache
        client.get("/pricing/")
    more = {
        "products": [
            {
                **CATALOG["products"][0],
                "plans": [
                    _plan(f"tier{n}", n, 1000 * n, {"sso": True, f"f{n}": True}, {f"l{n}": n})
                    for n in range(1, 9)
                ],
            }
        ]
    }
    with django_capture_on_commit_callbacks(execute=True):  # the load drops the cached names
        catalog_load(document=more)
    with django_assert_num_queries(4):
        client.get("/pricing/")


def _cards(response) -> str:
    html = response.content.decode()
    return html[html.index('<div class="plans">') : html.index("</main>")]


def test_visitors_get_the_plan_cards_rendered_once_and_a_catalog_change_at_once(
    client, named_catalog, django_assert_num_queries, django_capture_on_commit_callbacks
):
    cold = client.get("/pricing/?interval=month")
    with django_assert_num_queries(0):
        warm = client.get("/pricing/?interval=month")
    assert _cards(warm) == _cards(cold)
    assert "Business" in _cards(warm)

    renamed = {
        "products": [
            {
                **CATALOG["products"][0],
                "plans": [
                    {**plan, "name": f"{plan['name']} Plus"}
                    for plan in CATALOG["products"][0]["plans"]
                ],
            }
        ]
    }
    with django_capture_on_commit_callbacks(execute=True):  # the load moves the catalog's version
        catalog_load(document=renamed)
    assert "Business Plus" in _text(client.get("/pricing/?interval=month"))


def test_signed_in_accounts_get_cards_of_their_own(billing_client, account_customer, named_catalog):
    visitor = Client()
    visitor.get("/pricing/")  # a visitor's cards are cached
    add_card(account_customer)
    services.subscription_start(
        customer=account_customer, price=_price("pro"), trial=False, idempotency_key=new_key()
    )
    page = _text(billing_client.get("/pricing/"))
    assert "Your current plan" in page
    assert "Your current plan" not in _text(visitor.get("/pricing/"))


def test_the_upgrade_prompts_name_what_they_unlock_and_write_numbers_out(
    billing_client, account_customer, named_catalog
):
    add_card(account_customer)
    services.subscription_start(
        customer=account_customer, price=_price("pro"), trial=False, idempotency_key=new_key()
    )
    ref = customer_ref_of(account_customer)
    usage_record(
        reports=[
            UsageReport("e1", ref, "api_calls_per_month", 95000, clock.now()),
            UsageReport("e2", ref, "projects", 25, clock.now()),
        ]
    )
    page = _text(billing_client.get(reverse("billing:dashboard")))
    assert "Business includes SSO." in page
    assert (
        "You're close to your plan's limit for API calls per month: "
        "Business raises it to 2,000,000." in page
    )
    assert "You're close to your plan's limit for Projects: Business has no limit." in page
    assert "Upgrade to Business for SSO" in page
    assert RAW_KEYS.findall(page) == []


def test_the_plan_change_preview_says_what_the_plan_includes(
    billing_client, account_customer, named_catalog
):
    add_card(account_customer)
    services.subscription_start(
        customer=account_customer, price=_price("starter"), trial=False, idempotency_key=new_key()
    )
    response = billing_client.get(
        reverse("billing:change_plan") + f"?price={_price('business').public_id}"
    )
    page = _text(response)
    assert "Business includes: Projects: Unlimited API calls per month: 2,000,000" in page
    assert "Storage: 500 GB API access SSO" in page
    assert RAW_KEYS.findall(page) == []
