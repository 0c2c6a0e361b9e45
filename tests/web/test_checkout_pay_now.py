"""Checkout of a plan with a trial offers, after the trial, to pay now and skip it: charged at once
(the saved card, or one saved on the hosted form first), active, with a receipt."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.billing.conftest import add_card
from tests.web.conftest import card_saved_on_hosted_form, form_token
from tollgate.billing.models import Invoice, Subscription
from tollgate.billing.states import InvoiceStatus, SubscriptionStatus

pytestmark = pytest.mark.django_db

_BUTTON = re.compile(r"<button[^>]*>.*?</button>", re.S)


def buttons(response) -> list[str]:
    """The checkout's buttons, in page order."""
    return _BUTTON.findall(response.content.decode())


def test_a_plan_with_a_trial_offers_to_pay_now_after_the_trial_choices(billing_client, price):
    page = billing_client.get(reverse("billing:checkout", args=[price("starter").public_id]))
    found = [
        button
        for button in buttons(page)
        if 'name="action"' in button and 'value="apply"' not in button  # the promotion code's
    ]
    assert [re.search(r'value="(\w+)"', button).group(1) for button in found] == [
        "card",
        "trial",
        "pay_now",
    ]
    assert "Pay now and skip the trial" in found[2]
    assert 'class="button-secondary"' in found[2]
    assert "Skip the trial and pay $9.00 now" in page.content.decode()


def test_with_a_saved_card_paying_now_comes_after_the_trial_with_that_card(
    billing_client, price, account_customer
):
    add_card(account_customer)
    page = billing_client.get(reverse("billing:checkout", args=[price("starter").public_id]))
    values = re.findall(r'name="action" value="(\w+)"', page.content.decode())
    assert values == ["apply", "saved", "card", "pay_now"]
    assert "Skip the trial and pay $9.00 now with your Visa ending in 4242" in page.content.decode()


def test_a_plan_without_a_trial_has_no_trial_to_skip(billing_client, price):
    page = billing_client.get(reverse("billing:checkout", args=[price("pro").public_id]))
    assert "skip the trial" not in page.content.decode()
    url = reverse("billing:checkout", args=[price("pro").public_id])
    response = billing_client.post(url, {"form_token": form_token(page), "action": "pay_now"})
    assert response.status_code == 422
    assert "Choose one of the options below." in response.content.decode()
    assert not Subscription.objects.exists()


def test_paying_now_with_the_saved_card_starts_active_and_paid_without_a_trial(
    billing_client, price, account_customer
):
    add_card(account_customer)
    url = reverse("billing:checkout", args=[price("starter").public_id])
    token = form_token(billing_client.get(url))
    response = billing_client.post(url, {"form_token": token, "action": "pay_now"})
    assert response.status_code == 302
    assert response["Location"] == reverse("billing:checkout_return")
    subscription = Subscription.objects.get(customer=account_customer)
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert subscription.trial_end is None
    invoice = Invoice.objects.get(subscription=subscription)
    assert (invoice.status, invoice.total) == (InvoiceStatus.PAID, 900)
    page = billing_client.get(response["Location"]).content.decode()
    assert "You're subscribed to Starter" in page


def test_paying_now_without_a_card_saves_one_on_the_hosted_form_then_charges_it(
    billing_client, price, account
):
    url = reverse("billing:checkout", args=[price("starter").public_id])
    token = form_token(billing_client.get(url))
    response = billing_client.post(url, {"form_token": token, "action": "pay_now"})
    assert response.status_code == 303
    back = card_saved_on_hosted_form(billing_client, response["Location"])
    result = billing_client.get(back)
    assert result["Location"] == reverse("billing:checkout_return")
    subscription = Subscription.objects.get(customer__user=account)
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert subscription.trial_end is None
    assert Invoice.objects.get(subscription=subscription).status == InvoiceStatus.PAID
