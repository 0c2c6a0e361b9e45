"""A first customer of the demo catalog pays now instead of starting the trial and reaches the
receipt in one sitting, in a real Chromium against the sandbox's hosted card form."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command

from tests.browser.test_billing_journeys import assert_accessible, save_card, sign_in
from tests.conftest import STRONG_PASSWORD
from tollgate.billing.models import Invoice, Subscription
from tollgate.billing.states import InvoiceStatus, SubscriptionStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def site(live_server: Any, settings: Any) -> str:
    settings.SITE_URL = live_server.url
    call_command("catalog_load", "demo")
    return str(live_server.url)


def test_paying_now_skips_the_trial_and_ends_on_the_receipt(site, page, make_user):
    page, problems = page
    email = "first@example.org"
    make_user(email=email)
    sign_in(page, site, email, STRONG_PASSWORD)

    page.goto(f"{site}/pricing/")
    assert page.get_by_text("API calls per month: 100,000").is_visible()
    page.get_by_role("link", name="Start free trial of Pro").click()
    page.wait_for_url("**/billing/checkout/price_*/")
    assert page.get_by_text("Skip the trial and pay $29.00 now").is_visible()
    assert_accessible(page)
    page.get_by_role("button", name="Pay now and skip the trial").click()
    save_card(page, "4242 4242 4242 4242")

    page.wait_for_url("**/billing/checkout/return/")
    assert page.get_by_role("heading", name="You're subscribed to Pro").is_visible()
    subscription = Subscription.objects.get(customer__user__email=email)
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert subscription.trial_end is None
    invoice = Invoice.objects.get(subscription=subscription)
    assert (invoice.status, invoice.total) == (InvoiceStatus.PAID, 2900)

    page.get_by_role("link", name="Go to your billing page").click()
    page.get_by_role("link", name=invoice.number, exact=True).click()
    page.wait_for_url(f"**/billing/invoices/{invoice.public_id}/")
    assert page.get_by_role("heading", name=f"Invoice {invoice.number}").is_visible()
    assert page.locator("#invoice-status").inner_text() == "Paid"
    assert page.locator("#invoice-total").inner_text() == "$29.00"
    assert page.get_by_role("link", name="Download PDF").is_visible()
    assert_accessible(page)
    assert problems.items == []
