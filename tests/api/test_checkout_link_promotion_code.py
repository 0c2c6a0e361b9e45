"""A checkout link with a promotion code: the code is checked when the link is made, and the
checkout the link leads to shows it filled in with its discount; subscribing checks it again."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from tests.billing.conftest import add_card, new_key, staff  # noqa: F401  (a fixture)
from tests.web.conftest import form_token
from tollgate.accounts.models import User
from tollgate.billing import services
from tollgate.billing.models import Invoice, PromotionCode, Subscription
from tollgate.catalog.models import Plan
from tollgate.core import clock

pytestmark = pytest.mark.django_db

APP = "https://app.example.com"


@pytest.fixture(autouse=True)
def _product_host(settings):
    settings.API_REDIRECT_HOSTS = ["app.example.com"]


@pytest.fixture
def spring(staff: User, api_catalog: None) -> PromotionCode:  # noqa: F811
    coupon = services.coupon_create(
        name="Spring", percent_off=Decimal("20"), duration="forever", actor=staff
    )
    return services.promotion_code_create(coupon=coupon, code="SPRING", actor=staff)


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def _link(api: Any, code: str | None, customer: str = "u1") -> Any:
    body = {"customer": customer, "plan": "pro", "success_url": f"{APP}/done"}
    if code is not None:
        body["promotion_code"] = code
    return api.post("/checkout-links", body)


def test_a_checkout_link_with_a_code_opens_the_checkout_showing_its_discount(
    api, make_api_customer, plan_price, spring
):
    customer = make_api_customer("u1")
    response = _link(api, "spring")
    assert response.status_code == 201, response.content
    browser = Client()
    landed = browser.get(_path(response.json()["url"]))
    checkout = f"/billing/checkout/{plan_price('pro').public_id}/"
    assert landed["Location"] == f"{checkout}?promotion_code=SPRING"
    page = browser.get(landed["Location"])
    assert page.status_code == 200
    text = page.content.decode()
    assert 'value="SPRING"' in text
    assert "Code SPRING: 20% off every invoice. You pay $23.20 instead of $29.00 per month." in text
    add_card(customer)
    subscribed = browser.post(
        landed["Location"],
        {"form_token": form_token(page), "action": "saved", "promotion_code": "SPRING"},
    )
    assert subscribed.status_code == 302
    invoice = Invoice.objects.get(subscription__customer=customer)
    assert (invoice.status, invoice.total) == ("paid", 2320)


def test_a_checkout_link_without_a_code_opens_the_checkout_without_one(
    api, make_api_customer, plan_price, spring
):
    make_api_customer("u1")
    browser = Client()
    landed = browser.get(_path(_link(api, None).json()["url"]))
    assert landed["Location"] == f"/billing/checkout/{plan_price('pro').public_id}/"
    text = browser.get(landed["Location"]).content.decode()
    assert "You pay" not in text
    assert 'aria-invalid="true"' not in text


def _expired(by: User) -> None:
    coupon = services.coupon_create(
        name="Winter", percent_off=Decimal("10"), duration="once", actor=by
    )
    services.promotion_code_create(
        coupon=coupon, code="WINTER", expires_at=clock.now() + dt.timedelta(hours=1), actor=by
    )


def _exhausted(by: User) -> None:
    coupon = services.coupon_create(
        name="Launch", percent_off=Decimal("50"), duration="once", actor=by
    )
    services.promotion_code_create(coupon=coupon, code="LAUNCH", max_redemptions=1, actor=by)
    first = services.customer_get_or_create(
        user=User.objects.create_user(email="first@example.org", password="x-" * 10)
    )
    add_card(first)
    services.subscription_start(
        customer=first,
        price=Plan.objects.get(code="pro").prices.get(),
        idempotency_key=new_key(),
        promotion_code="LAUNCH",
    )


def _starter_only(by: User) -> None:
    coupon = services.coupon_create(
        name="Starter deal",
        percent_off=Decimal("30"),
        duration="once",
        plans=[Plan.objects.get(code="starter")],
        actor=by,
    )
    services.promotion_code_create(coupon=coupon, code="STARTER30", actor=by)


@pytest.mark.parametrize(
    ("make", "code", "reason"),
    [
        (None, "NOPE", "unknown"),
        (_expired, "WINTER", "expired"),
        (_exhausted, "LAUNCH", "exhausted"),
        (_starter_only, "STARTER30", "not_applicable"),
    ],
)
def test_a_checkout_link_refuses_a_code_that_cannot_be_used(
    api,
    make_api_customer,
    api_catalog,
    staff,  # noqa: F811
    make,
    code,
    reason,
):
    make_api_customer("u1")
    if make is not None:
        make(staff)
    with clock.frozen(clock.now() + dt.timedelta(hours=2)):
        refused = _link(api, code)
    assert refused.status_code == 422, refused.content
    error = refused.json()["error"]
    assert error["code"] == "promotion_code_refused"
    assert error["details"] == {"field": "promotion_code", "reason": reason}
    assert error["message"]


def test_a_code_that_expires_after_the_link_was_made_is_refused_on_the_checkout(
    api,
    make_api_customer,
    plan_price,
    spring,
    staff,  # noqa: F811
):
    customer = make_api_customer("u1")
    link = _link(api, "SPRING").json()
    services.promotion_code_archive(promotion=spring, actor=staff)
    browser = Client()
    landed = browser.get(_path(link["url"]))
    page = browser.get(landed["Location"])
    assert page.status_code == 200
    text = page.content.decode()
    assert "That code has expired." in text
    assert 'aria-invalid="true"' in text
    assert "You pay" not in text
    add_card(customer)
    refused = browser.post(
        landed["Location"],
        {"form_token": form_token(page), "action": "saved", "promotion_code": "SPRING"},
    )
    assert refused.status_code == 422
    assert not Subscription.objects.filter(customer=customer).exists()


def test_the_openapi_document_describes_the_promotion_code_of_a_checkout_link(client):
    schemas = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    assert (
        "promotion code" in schemas["CheckoutLinkIn"]["properties"]["promotion_code"]["description"]
    )
