"""Seats in a real Chromium: the checkout of a per-seat plan shows the total for the seats asked
for and charges it; the seats page previews two more (prorated) and adds them; the organisation page
counts the seats taken. Every page passes axe-core without a serious or critical violation, with
no console error or CSP violation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.billing.conftest import add_card
from tests.billing.services.test_seats import SEATS_CATALOG
from tests.browser.test_billing_journeys import assert_accessible, sign_in
from tests.conftest import STRONG_PASSWORD
from tollgate.billing import services
from tollgate.billing.models import Invoice, Subscription
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def site(live_server: Any, settings: Any) -> str:
    settings.SITE_URL = live_server.url
    catalog_load(document=SEATS_CATALOG)
    return str(live_server.url)


def test_a_team_buys_seats_then_adds_two(site, page, make_user):
    page, problems = page
    owner = make_user(email="owner@example.org")
    add_card(services.customer_get_or_create(user=owner))
    team = Price.objects.get(plan__code="team", active=True)

    sign_in(page, site, "owner@example.org", STRONG_PASSWORD)
    page.goto(f"{site}/billing/checkout/{team.public_id}/")
    assert page.get_by_text("$10.00 per seat per month").is_visible()
    assert_accessible(page)
    page.get_by_label("Seats").fill("3")
    page.get_by_role("button", name="Update the total").click()
    assert page.locator("#checkout-total").inner_text() == "$30.00 per month for 3 seats"
    page.get_by_role("button", name="Pay now and skip the trial").click()
    page.wait_for_url(f"{site}/billing/checkout/return/")
    subscription = Subscription.objects.get()
    assert (subscription.seats, Invoice.objects.get().total) == (3, 3000)

    page.goto(f"{site}/billing/")
    assert page.locator("#subscription-seats").inner_text().startswith("3 ($30.00 per month)")
    page.get_by_role("link", name="Change seats").click()
    assert_accessible(page)
    page.get_by_label("How many seats do you need?").fill("5")
    page.get_by_role("button", name="Preview").click()
    assert page.locator("#seats-preview").is_visible()
    due = page.locator("#preview-due").inner_text()
    assert_accessible(page)
    page.get_by_role("button", name=f"Confirm and pay {due}").click()
    page.wait_for_url(f"{site}/billing/")
    assert page.get_by_text("Your subscription has 5 seats now.").is_visible()
    subscription.refresh_from_db()
    assert subscription.seats == 5
    assert Invoice.objects.get(billing_reason="subscription_update").status == "paid"

    page.goto(f"{site}/account/organisation/")
    assert page.locator("#seats-taken").inner_text().startswith("1 of 5 seats taken")
    assert_accessible(page)
    assert problems.items == []
