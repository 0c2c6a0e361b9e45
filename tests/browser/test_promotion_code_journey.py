"""A customer enters a promotion code at checkout in a real Chromium: a wrong code is refused on
its field, the right one shows the discount, and the receipt carries the DISCOUNT line."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command

from tests.browser.test_billing_journeys import assert_accessible, save_card, sign_in
from tests.conftest import STRONG_PASSWORD
from tollgate.accounts.models import User
from tollgate.billing import services
from tollgate.billing.models import Invoice
from tollgate.billing.states import InvoiceStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def site(live_server: Any, settings: Any) -> str:
    settings.SITE_URL = live_server.url
    call_command("catalog_load", "demo")
    staff = User.objects.create_user(
        email="staff@example.org", password=STRONG_PASSWORD, is_staff=True
    )
    coupon = services.coupon_create(
        name="Spring sale", percent_off=Decimal("20"), duration="forever", actor=staff
    )
    services.promotion_code_create(coupon=coupon, code="SPRING", actor=staff)
    return str(live_server.url)


def test_a_code_at_checkout_is_refused_when_wrong_and_discounts_the_invoice_when_right(
    site, page, make_user
):
    page, problems = page
    email = "first@example.org"
    make_user(email=email)
    sign_in(page, site, email, STRONG_PASSWORD)
    page.goto(f"{site}/pricing/")
    page.get_by_role("link", name="Start free trial of Pro").click()
    page.wait_for_url("**/billing/checkout/price_*/")

    code = page.get_by_label("Promotion code (optional)")
    code.fill("WINTER")
    page.get_by_role("button", name="Apply").click()
    assert page.get_by_role("alert").filter(has_text="That code isn't valid").is_visible()
    assert code.get_attribute("aria-invalid") == "true"
    assert_accessible(page)

    code.fill("spring")
    page.get_by_role("button", name="Apply").click()
    applied = page.locator("#promotion-applied")
    assert applied.inner_text() == (
        "Code SPRING: 20% off every invoice. You pay $23.20 instead of $29.00 per month once "
        "the trial ends."
    )
    assert_accessible(page)
    page.get_by_role("button", name="Pay now and skip the trial").click()
    save_card(page, "4242 4242 4242 4242")

    page.wait_for_url("**/billing/checkout/return/")
    invoice = Invoice.objects.get(subscription__customer__user__email=email)
    assert (invoice.status, invoice.total) == (InvoiceStatus.PAID, 2320)
    page.goto(f"{site}/billing/invoices/{invoice.public_id}/")
    assert page.get_by_text("Discount: Spring sale").is_visible()
    assert page.locator("#invoice-total").inner_text() == "$23.20"
    assert_accessible(page)
    # The refused code's form came back with 422, which Chromium reports on its console.
    assert [item for item in problems.items if "status of 422" not in item] == []
