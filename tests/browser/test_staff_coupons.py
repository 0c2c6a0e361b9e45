"""Staff create a coupon and its code and apply the coupon to a customer's subscription in a real
Chromium; the pages fit a phone and pass axe."""

from __future__ import annotations

from typing import Any

import pytest

from tests.billing.conftest import CARD_OK, CATALOG, add_card, new_key
from tests.browser.test_staff_journey import assert_accessible, sign_in
from tollgate.billing import services
from tollgate.billing.models import Coupon, Discount
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SIZES = ({"width": 1280, "height": 800}, {"width": 390, "height": 844})


def accessible_at_every_size(page: Any) -> None:
    for size in SIZES:
        page.set_viewport_size(size)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= size["width"], f"{page.url} is {width} px wide at {size['width']} px"
        assert_accessible(page)
    page.set_viewport_size(SIZES[0])


def test_staff_create_a_coupon_and_a_code_then_apply_it_to_a_subscription(
    live_server, settings, page, make_user
):
    page, problems = page
    settings.SITE_URL = live_server.url
    catalog_load(document=CATALOG)
    make_user("support@example.org", is_staff=True)
    customer = services.customer_get_or_create(user=make_user("payer@example.org"))
    add_card(customer, CARD_OK)
    subscription = services.subscription_start(
        customer=customer,
        price=Price.objects.get(plan__code="pro", interval="month"),
        idempotency_key=new_key(),
    )
    base = live_server.url
    sign_in(page, base, "support@example.org")

    page.goto(f"{base}/staff/")
    page.get_by_role("navigation", name="Staff").get_by_role("link", name="Coupons").click()
    page.wait_for_url(f"{base}/staff/coupons/")
    accessible_at_every_size(page)
    page.get_by_label("Name (shown on invoices)").fill("Loyalty")
    page.get_by_label("A percentage off").check()
    page.get_by_label("Percent off").fill("15")
    page.get_by_label("For how long").select_option("repeating")
    page.get_by_label("Billing periods").fill("3")
    page.get_by_role("button", name="Create the coupon").click()
    coupon = Coupon.objects.get()
    page.wait_for_url(f"{base}/staff/coupons/{coupon.public_id}/")
    assert page.get_by_text("15% off for 3 billing periods").is_visible()
    page.get_by_role("textbox", name="Code").fill("loyal15")
    page.get_by_role("button", name="Add the code").click()
    assert page.get_by_role("cell", name="LOYAL15", exact=True).is_visible()
    accessible_at_every_size(page)

    page.goto(f"{base}/staff/customers/{customer.public_id}/")
    page.get_by_role("link", name=f"Discount {subscription.public_id}").click()
    accessible_at_every_size(page)
    page.get_by_role("combobox", name="Coupon").select_option(
        label="Loyalty: 15% off for 3 billing periods"
    )
    page.get_by_role("button", name="Apply the coupon").click()
    page.wait_for_url(f"{base}/staff/customers/{customer.public_id}/")
    assert page.get_by_text("Loyalty applies to").is_visible()
    assert Discount.objects.get().coupon == coupon
    assert problems.items == []
