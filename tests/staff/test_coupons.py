"""The staff console's coupons: create one and its codes, archive them, apply a coupon to a
subscription from the customer's page; refusals shown on the form."""

from __future__ import annotations

import re

import pytest

from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.models import Coupon, Discount, PromotionCode

pytestmark = pytest.mark.django_db
_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


def test_staff_create_a_coupon_add_a_code_and_archive_them(staff_client, price):
    response = staff_client.post(
        "/staff/coupons/",
        {
            "name": "Spring",
            "kind": "amount",
            "amount_off": "10.00",
            "currency": "usd",
            "duration": "repeating",
            "duration_periods": 3,
            "plans": [price("pro").plan.pk],
            "max_redemptions": 100,
        },
    )
    coupon = Coupon.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/staff/coupons/{coupon.public_id}/"
    assert (coupon.amount_off, coupon.currency, coupon.duration_periods) == (1000, "USD", 3)
    assert list(coupon.plans.all()) == [price("pro").plan]

    response = staff_client.post(f"/staff/coupons/{coupon.public_id}/", {"code": "spring-10"})
    assert response.status_code == 302
    promotion = PromotionCode.objects.get()
    assert promotion.code == "SPRING-10"
    page = staff_client.get(f"/staff/coupons/{coupon.public_id}/").content.decode()
    assert "$10.00 off for 3 billing periods" in page
    assert "SPRING-10" in page

    staff_client.post(f"/staff/codes/{promotion.public_id}/archive/")
    staff_client.post(f"/staff/coupons/{coupon.public_id}/archive/")
    promotion.refresh_from_db()
    coupon.refresh_from_db()
    assert promotion.archived_at is not None
    assert coupon.archived_at is not None
    listing = staff_client.get("/staff/coupons/").content.decode()
    assert "archived" in listing
    assert set(AuditEvent.objects.values_list("action", flat=True)) >= {
        "billing.coupon_created",
        "billing.promotion_code_created",
        "billing.promotion_code_archived",
        "billing.coupon_archived",
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "percent"}, "Give the percentage off."),
        ({"kind": "amount", "amount_off": "5", "currency": "XX"}, "3-letter code"),
        ({"kind": "percent", "percent_off": "10", "duration": "repeating"}, "how many billing"),
    ],
)
def test_a_coupon_that_cannot_be_made_is_refused_on_the_form(staff_client, catalog, data, message):
    response = staff_client.post("/staff/coupons/", {"name": "X", "duration": "once", **data})
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not Coupon.objects.exists()


def test_a_code_taken_already_is_refused_on_its_field(staff_client, staff, catalog):
    coupon = services.coupon_create(name="A", percent_off=10, duration="once", actor=staff)
    services.promotion_code_create(coupon=coupon, code="TAKEN", actor=staff)
    response = staff_client.post(f"/staff/coupons/{coupon.public_id}/", {"code": "taken"})
    assert response.status_code == 422
    assert "That code exists already" in response.content.decode()


def test_staff_apply_a_coupon_to_a_subscription_once_per_form(staff_client, staff, customer, price):
    add_card(customer, CARD_OK)
    subscription = services.subscription_start(
        customer=customer, price=price("pro"), idempotency_key=new_key()
    )
    coupon = services.coupon_create(name="Sorry", percent_off=50, duration="once", actor=staff)
    customer_page = staff_client.get(f"/staff/customers/{customer.public_id}/").content.decode()
    url = f"/staff/subscriptions/{subscription.public_id}/discount/"
    assert url in customer_page
    token = _TOKEN.search(staff_client.get(url).content.decode()).group(1)

    for _ in range(2):  # a double submission
        response = staff_client.post(url, {"form_token": token, "coupon": coupon.public_id})
        assert response.status_code == 302
    discount = Discount.objects.get()
    coupon.refresh_from_db()
    assert (discount.subscription, coupon.times_redeemed) == (subscription, 1)


def test_staff_give_other_currencies_on_the_console_form(staff_client, catalog):
    data = {"name": "Multi", "kind": "amount", "amount_off": "10.00", "currency": "usd"}
    response = staff_client.post(
        "/staff/coupons/", {**data, "duration": "once", "other_amounts": "eur 9.00, GBP 8"}
    )
    assert response.status_code == 302
    assert Coupon.objects.get().amounts_off == {"EUR": 900, "GBP": 800}
    refused = staff_client.post(
        "/staff/coupons/", {**data, "duration": "once", "other_amounts": "EUR nine"}
    )
    assert refused.status_code == 422
    assert "Write each as a currency code and an amount" in refused.content.decode()
