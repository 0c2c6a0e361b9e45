"""Customers' billing journeys in a real Chromium, against the sandbox gateway and its hosted card
form: subscribing, upgrading with a proration preview, canceling and resuming; and a card that
fails at renewal, the past-due banner and the card replaced. Every billing page passes axe-core
without a serious or critical violation, and no page logs a console error or CSP violation."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.core import mail

from tests.conftest import STRONG_PASSWORD
from tollgate.billing.clock import billing_run
from tollgate.billing.models import Invoice, Subscription
from tollgate.billing.states import InvoiceStatus, SubscriptionStatus
from tollgate.catalog.services import catalog_load
from tollgate.core import clock

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CATALOG = {
    "products": [
        {
            "code": "app",
            "name": "App",
            "plans": [
                {
                    "code": "starter",
                    "name": "Starter",
                    "trial_days": 14,
                    "display_order": 1,
                    "features": {"api_access": False, "sso": False},
                    "prices": [
                        {"amount": 900, "currency": "USD", "interval": "month"},
                        {"amount": 9000, "currency": "USD", "interval": "year"},
                    ],
                },
                {
                    "code": "pro",
                    "name": "Pro",
                    "display_order": 2,
                    "features": {"api_access": True, "sso": False},
                    "prices": [
                        {"amount": 2900, "currency": "USD", "interval": "month"},
                        {"amount": 29000, "currency": "USD", "interval": "year"},
                    ],
                },
                {
                    "code": "business",
                    "name": "Business",
                    "display_order": 3,
                    "features": {"api_access": True, "sso": True},
                    "prices": [
                        {"amount": 9900, "currency": "USD", "interval": "month"},
                        {"amount": 99000, "currency": "USD", "interval": "year"},
                    ],
                },
            ],
        }
    ]
}
SERIOUS = {"serious", "critical"}


@pytest.fixture
def site(live_server: Any, settings: Any) -> str:
    """The live server, with the hosted card form's links pointing at it."""
    settings.SITE_URL = live_server.url
    catalog_load(document=CATALOG)
    return str(live_server.url)


def assert_accessible(page: Any) -> None:
    """axe-core (bundled, offline) finds no serious or critical violation on the page."""
    results = Axe().run(page)
    serious = [
        f"{violation['id']}: {violation['help']} ({len(violation['nodes'])} nodes)"
        for violation in results.response["violations"]
        if violation.get("impact") in SERIOUS
    ]
    assert serious == [], f"{page.url}: {serious}"


def save_card(page: Any, number: str) -> None:
    """On the sandbox's hosted form (TEST MODE), type a test card and save it."""
    page.wait_for_url("**/sandbox/setup/**")
    assert page.get_by_text("TEST MODE").first.is_visible()
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiry date (MM/YY)").fill("12/34")
    page.get_by_label("Security code (CVC)").fill("123")
    page.get_by_label("Name on card").fill("Jo Payer")
    page.get_by_role("button", name="Save card").click()


def mailed_link(email: str, fragment: str) -> str:
    for message in reversed(mail.outbox):
        if email in message.to:
            for link in re.findall(r"https?://[^\s<>\"']+", str(message.body)):
                if fragment in link:
                    return link
    raise AssertionError(f"no mailed link containing {fragment}")


def sign_in(page: Any, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_login", email)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{base}/")


def test_subscribe_upgrade_with_preview_cancel_and_resume(site, page):
    page, problems = page
    email, password = "subscriber@example.org", "harbor-violet-kettle-5812"

    page.goto(f"{site}/")
    page.get_by_role("link", name="Sign up").click()
    page.fill("#id_email", email)
    page.fill("#id_password1", password)
    page.fill("#id_password2", password)
    page.get_by_role("button", name="Sign Up").click()
    page.wait_for_url("**/accounts/confirm-email/")
    page.goto(mailed_link(email, "/accounts/confirm-email/"))
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url("**/accounts/login/")
    sign_in(page, site, email, password)

    # Pricing: the yearly toggle is a plain link; trials are shown; choose Pro monthly.
    page.get_by_role("link", name="Pricing", exact=True).click()
    page.get_by_role("link", name="Yearly").click()
    page.wait_for_url("**/pricing/?interval=year")
    assert page.get_by_text("$290.00").is_visible()
    page.get_by_role("link", name="Monthly").click()
    assert page.get_by_text("14-day free trial").is_visible()
    assert_accessible(page)
    page.get_by_role("link", name="Choose Pro").click()
    page.wait_for_url("**/billing/checkout/price_*/")
    assert_accessible(page)
    page.get_by_role("button", name="Continue to card details").click()
    save_card(page, "4242 4242 4242 4242")

    page.wait_for_url("**/billing/checkout/return/")
    assert page.get_by_role("heading", name="You're subscribed to Pro").is_visible()
    assert page.get_by_text("Active", exact=True).is_visible()
    assert_accessible(page)
    subscription = Subscription.objects.get(customer__user__email=email)
    assert subscription.status == SubscriptionStatus.ACTIVE
    invoice = Invoice.objects.get(subscription=subscription)
    receipt = next(
        message
        for message in mail.outbox
        if email in message.to
        and message.subject.startswith(f"Receipt for invoice {invoice.number}")
    )
    assert "$29.00" in str(receipt.body)

    # The receipt page and its PDF, from the dashboard.
    page.get_by_role("link", name="Go to your billing page").click()
    page.wait_for_url(f"{site}/billing/")
    assert_accessible(page)
    page.get_by_role("link", name=invoice.number, exact=True).click()
    page.wait_for_url(f"**/billing/invoices/{invoice.public_id}/")
    assert page.get_by_role("heading", name=f"Invoice {invoice.number}").is_visible()
    assert_accessible(page)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download PDF").click()
    assert download.value.suggested_filename == f"invoice-{invoice.number}.pdf"

    # Upgrade to Business: the prorated amount is shown before confirming, then charged.
    page.goto(f"{site}/billing/")
    page.get_by_role("link", name="Change plan").click()
    page.get_by_role("link", name="Preview Business per month").click()
    due = page.locator("#preview-due").inner_text()
    assert due.startswith("$")
    assert_accessible(page)
    page.get_by_role("button", name=f"Confirm and pay {due}").click()
    page.wait_for_url(f"{site}/billing/")
    assert page.get_by_text("You're now on Business.").is_visible()
    upgrade = Invoice.objects.get(
        subscription=subscription, billing_reason=Invoice.BillingReason.SUBSCRIPTION_UPDATE
    )
    assert upgrade.status == InvoiceStatus.PAID
    assert f"${upgrade.total // 100:,}.{upgrade.total % 100:02d}" == due

    # Cancel at the period end, with a reason; then resume.
    page.get_by_role("link", name="Cancel subscription").click()
    assert_accessible(page)
    # By keyboard only: the reasons are one tab stop, then the comment, then the button.
    page.get_by_label("It costs too much").focus()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    page.keyboard.type("Budget review")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Cancel at the end of the period"
    page.keyboard.press("Enter")
    page.wait_for_url(f"{site}/billing/")
    assert page.get_by_text("You can resume it until then.").is_visible()
    subscription.refresh_from_db()
    assert subscription.cancel_at_period_end
    assert subscription.cancellation_reason == "too_expensive"
    assert subscription.cancellation_comment == "Budget review"
    page.get_by_role("button", name="Resume subscription").click()
    page.wait_for_url(f"{site}/billing/")
    assert page.get_by_text("Your subscription will continue.").is_visible()
    subscription.refresh_from_db()
    assert not subscription.cancel_at_period_end
    assert_accessible(page)

    assert problems.items == []


def test_a_card_failing_at_renewal_shows_the_banner_until_it_is_replaced(site, page, make_user):
    page, problems = page
    email = "renewer@example.org"
    make_user(email=email)
    sign_in(page, site, email, STRONG_PASSWORD)

    # Starter has a trial: subscribe with the card that saves fine but declines every charge.
    page.goto(f"{site}/pricing/")
    page.get_by_role("link", name="Start free trial of Starter").click()
    page.get_by_role("button", name="Add a card and start the trial").click()
    save_card(page, "4000 0000 0000 0341")
    page.wait_for_url("**/billing/checkout/return/")
    assert page.get_by_role("heading", name="Your Starter trial has started").is_visible()
    subscription = Subscription.objects.get(customer__user__email=email)
    assert subscription.status == SubscriptionStatus.TRIALING

    # The clock reaches the trial's end: the first renewal charge is declined.
    assert subscription.trial_end is not None
    with clock.frozen(subscription.trial_end + dt.timedelta(minutes=1)):
        billing_run()
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.PAST_DUE

    page.goto(f"{site}/")
    banner = page.get_by_role("alert").filter(has_text="past due")
    assert banner.is_visible()
    banner.get_by_role("link", name="Update your card").click()
    page.wait_for_url(f"{site}/billing/payment-method/")
    assert_accessible(page)
    page.get_by_role("button", name="Replace card").click()
    save_card(page, "4242 4242 4242 4242")

    page.wait_for_url(f"{site}/billing/")
    assert page.get_by_text(re.compile(r"Thank you: invoice .* is paid\.")).is_visible()
    assert page.locator("#subscription-status").inner_text() == "Active"
    assert page.get_by_role("alert").filter(has_text="past due").count() == 0
    assert_accessible(page)
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.ACTIVE
    renewal = Invoice.objects.get(
        subscription=subscription, billing_reason=Invoice.BillingReason.SUBSCRIPTION_CYCLE
    )
    assert renewal.status == InvoiceStatus.PAID

    assert problems.items == []
