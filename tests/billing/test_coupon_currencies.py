"""A fixed-amount coupon in several currencies: each price is discounted by the coupon's amount in
the price's currency; a currency it names no amount in is not discounted (the code does not apply).
Made in the admin (the console: tests/staff/test_coupons.py), refusals on the form."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.billing import discounts, services
from tollgate.billing.errors import PromotionCodeRefused
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Coupon, Invoice
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load
from tollgate.core.errors import ValidationFailed

pytestmark = pytest.mark.django_db

CURRENCIES = {
    "products": [
        {
            "code": "app",
            "name": "App",
            "plans": [
                {
                    "code": f"pro-{currency.lower()}",
                    "name": f"Pro {currency}",
                    "prices": [{"amount": 2900, "currency": currency, "interval": "month"}],
                }
                for currency in ("USD", "EUR", "GBP")
            ],
        }
    ]
}


@pytest.fixture
def prices(db):
    catalog_load(document=CURRENCIES)
    return {price.currency: price for price in Price.objects.filter(active=True)}


@pytest.fixture
def welcome(staff):
    coupon = services.coupon_create(
        name="Welcome",
        amount_off=1000,
        currency="USD",
        amounts_off={"EUR": 900},
        duration="once",
        actor=staff,
    )
    services.promotion_code_create(coupon=coupon, code="WELCOME", actor=staff)
    return coupon


def test_each_currency_gets_its_own_amount_off(welcome, prices, make_customer):
    totals = {}
    for currency in ("USD", "EUR"):
        customer = make_customer(email=f"{currency.lower()}@example.org")
        add_card(customer, CARD_OK)
        subscription = services.subscription_start(
            customer=customer,
            price=prices[currency],
            trial=False,
            idempotency_key=new_key(),
            promotion_code="welcome",
        )
        totals[currency] = Invoice.objects.get(subscription=subscription).total
    assert totals == {"USD": 1900, "EUR": 2000}
    assert ledger_check().ok
    assert discounts.coupon_terms(welcome) == "$10.00 or €9.00 off the first invoice"


def test_a_currency_without_an_amount_is_not_discounted(welcome, prices, customer):
    add_card(customer, CARD_OK)
    with pytest.raises(PromotionCodeRefused) as refused:
        services.subscription_start(
            customer=customer,
            price=prices["GBP"],
            trial=False,
            idempotency_key=new_key(),
            promotion_code="WELCOME",
        )
    assert refused.value.details["reason"] == "not_applicable"


@pytest.mark.parametrize(
    ("amounts", "message"),
    [
        ({"EURO": 900}, "not a currency"),
        ({"USD": 900}, "USD is given twice"),
        ({"EUR": 0}, "more than zero"),
        ({"EUR": "9.00"}, "more than zero"),
    ],
)
def test_further_amounts_that_cannot_be_are_refused(staff, amounts, message):
    with pytest.raises(ValidationFailed, match=message) as refused:
        services.coupon_create(
            name="X",
            amount_off=1000,
            currency="USD",
            amounts_off=amounts,
            duration="once",
            actor=staff,
        )
    assert refused.value.details["field"] == "amounts_off"
    assert not Coupon.objects.exists()


def test_a_percentage_has_no_amounts_in_currencies(staff):
    with pytest.raises(ValidationFailed, match="go with a fixed amount"):
        services.coupon_create(
            name="X", percent_off=10, amounts_off={"EUR": 900}, duration="once", actor=staff
        )


def test_the_admin_refuses_further_amounts_that_cannot_be_on_the_form(client, staff, prices):
    staff.is_superuser = True
    staff.save(update_fields=["is_superuser"])
    client.force_login(staff)
    data = {"name": "A", "amount_off": 1000, "currency": "USD", "duration": "once"}
    refused = client.post(
        reverse("admin:billing_coupon_add"), {**data, "amounts_off": '{"EUR": -5}'}
    )
    assert refused.status_code == 200
    assert "The amount off in EUR is more than zero." in refused.content.decode()
    made = client.post(reverse("admin:billing_coupon_add"), {**data, "amounts_off": '{"eur": 900}'})
    assert made.status_code == 302, made.content.decode()[:2000]
    assert Coupon.objects.get().amounts_off == {"EUR": 900}
