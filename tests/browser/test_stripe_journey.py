"""Subscribing through the Stripe gateway in a real Chromium, against a local localstripe server:
Tollgate's card page mounts the Stripe.js stand-in that localstripe serves, the card goes from the
browser to "Stripe" only, and the subscription is active when the customer comes back. No console
error or CSP violation on the way."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.conf import settings

from tests.billing.conftest import new_key
from tests.billing.stripe.conftest import (  # noqa: F401  (fixtures)
    Browser,
    localstripe_url,
    stripe_gateway,
    webhook_secrets,
)
from tests.browser.test_billing_journeys import CATALOG, sign_in
from tests.conftest import STRONG_PASSWORD
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.gateways.stripe.adapter import StripeGateway
from tollgate.billing.models import PaymentAttempt, PaymentMethod, Subscription
from tollgate.billing.states import PaymentStatus, SubscriptionStatus
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load
from tollgate.core import clock

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
START = dt.datetime(2025, 1, 31, 10, tzinfo=dt.UTC)
RENEWAL = dt.datetime(2025, 2, 28, 10, tzinfo=dt.UTC)


@pytest.fixture
def site(live_server: Any, settings: Any, request: pytest.FixtureRequest) -> str:
    """The live server, with Stripe (localstripe) as the gateway."""
    request.getfixturevalue("stripe_gateway")
    settings.SITE_URL = live_server.url
    catalog_load(document=CATALOG)
    return str(live_server.url)


def test_subscribe_with_4242_on_the_stripe_card_page(site, page, make_user):
    page, problems = page
    user = make_user(email="stripe-payer@example.org")
    sign_in(page, site, user.email, STRONG_PASSWORD)

    page.get_by_role("link", name="Pricing", exact=True).click()
    page.get_by_role("link", name="Choose Pro").click()
    page.wait_for_url("**/billing/checkout/price_*/")
    page.get_by_role("button", name="Continue to card details").click()

    page.wait_for_url("**/stripe/setup/**")
    assert page.get_by_text("TEST MODE").first.is_visible()
    # localstripe's stand-in for Stripe's card element (Stripe's own is an iframe).
    card = page.locator("#card-element")
    card.locator("input[placeholder=number]").fill("4242424242424242")
    card.locator("input[placeholder=exp_month]").fill("12")
    card.locator("input[placeholder=exp_year]").fill("34")
    card.locator("input[placeholder=cvc]").fill("123")
    card.locator("input[placeholder=postal_code]").fill("10001")
    page.get_by_role("button", name="Save card").click()

    page.wait_for_url("**/billing/checkout/return/**")
    assert page.get_by_role("heading", name="You're subscribed to Pro").is_visible()
    subscription = Subscription.objects.get(customer__user=user)
    assert subscription.status == SubscriptionStatus.ACTIVE
    payment = PaymentAttempt.objects.get(invoice__subscription=subscription)
    assert (payment.gateway, payment.status) == ("stripe", PaymentStatus.SUCCEEDED)
    assert payment.gateway_reference.startswith("pi_")
    method = PaymentMethod.objects.get(customer=subscription.customer)
    assert (method.gateway, method.last4, method.exp_year) == ("stripe", "4242", 2034)
    assert problems.items == []


def test_a_renewal_needing_authentication_is_confirmed_on_the_stripe_page(site, page, make_user):
    page, problems = page
    user = make_user(email="stripe-3ds@example.org")
    customer = services.customer_get_or_create(user=user)
    gateway = StripeGateway()
    for number in ("4242424242424242", "4000002500003155"):
        session = services.payment_method_setup_start(customer=customer, return_url=f"{site}/")
        intent = gateway.setup_intent_get(reference=session.reference)
        Browser(settings.STRIPE_API_BASE).confirm_card_setup(intent.client_secret, number)
        services.payment_method_attach(customer=customer, setup_reference=session.reference)
        if number.startswith("4242"):
            with clock.frozen(START):
                subscription = services.subscription_start(
                    customer=customer,
                    price=Price.objects.get(plan__code="pro", interval="month"),
                    idempotency_key=new_key(),
                )
    with clock.frozen(RENEWAL):
        billing_run()
    payment = PaymentAttempt.objects.get(
        invoice__subscription=subscription, invoice__billing_reason="subscription_cycle"
    )
    assert payment.status == PaymentStatus.REQUIRES_ACTION

    page.goto(payment.action_url)  # the link in the customer's email
    assert page.get_by_role("heading", name="Confirm your payment").is_visible()
    page.get_by_role("button", name="Confirm payment").click()
    # localstripe's stand-in for the bank's 3-D Secure window.
    page.get_by_role("button", name="Complete authentication").click()

    page.wait_for_url("**/stripe/authenticate/**/done/")
    assert page.get_by_role("heading", name="Payment confirmed").is_visible()
    payment.refresh_from_db()
    subscription.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert problems.items == []
