"""The checkout's promotion code: Apply shows the discount or says why the code cannot be used;
subscribing with it puts the discount on the first invoice, on the saved card and after the
hosted card form alike."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from tests.billing.conftest import add_card
from tests.web.conftest import card_saved_on_hosted_form, form_token
from tollgate.billing import services
from tollgate.billing.models import Invoice, PromotionCode, Subscription

pytestmark = pytest.mark.django_db


@pytest.fixture
def spring(staff) -> PromotionCode:
    coupon = services.coupon_create(
        name="Spring", percent_off=Decimal("20"), duration="forever", actor=staff
    )
    return services.promotion_code_create(coupon=coupon, code="SPRING", actor=staff)


def test_applying_a_code_shows_what_is_paid_after_its_discount_and_starts_nothing(
    billing_client, price, spring
):
    url = reverse("billing:checkout", args=[price("pro").public_id])
    token = form_token(billing_client.get(url))
    page = billing_client.post(
        url, {"form_token": token, "action": "apply", "promotion_code": "spring"}
    )
    assert page.status_code == 200
    text = page.content.decode()
    assert "Code SPRING: 20% off every invoice. You pay $23.20 instead of $29.00 per month." in text
    assert not Subscription.objects.exists()


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("NOPE", "That code isn&#x27;t valid; check it and try again."),
        ("", "Enter a promotion code."),
    ],
)
def test_a_code_that_cannot_be_used_is_refused_on_its_field(
    billing_client, price, spring, code, message
):
    url = reverse("billing:checkout", args=[price("pro").public_id])
    token = form_token(billing_client.get(url))
    page = billing_client.post(
        url, {"form_token": token, "action": "apply", "promotion_code": code}
    )
    assert page.status_code == 422
    text = page.content.decode()
    assert message in text
    assert 'aria-invalid="true"' in text


def test_subscribing_with_the_saved_card_and_a_code_charges_the_discounted_amount(
    billing_client, price, account_customer, spring
):
    add_card(account_customer)
    url = reverse("billing:checkout", args=[price("pro").public_id])
    token = form_token(billing_client.get(url))
    response = billing_client.post(
        url, {"form_token": token, "action": "saved", "promotion_code": "Spring"}
    )
    assert response.status_code == 302
    invoice = Invoice.objects.get(subscription__customer=account_customer)
    assert (invoice.status, invoice.total) == ("paid", 2320)
    page = billing_client.get(reverse("billing:invoice", args=[invoice.public_id]))
    assert "Discount: Spring" in page.content.decode()


def test_a_refused_code_at_subscribing_can_be_corrected_and_submitted_again(
    billing_client, price, account_customer, spring
):
    add_card(account_customer)
    url = reverse("billing:checkout", args=[price("pro").public_id])
    token = form_token(billing_client.get(url))
    refused = billing_client.post(
        url, {"form_token": token, "action": "saved", "promotion_code": "WRONG"}
    )
    assert refused.status_code == 422
    assert not Subscription.objects.exists()
    response = billing_client.post(
        url, {"form_token": form_token(refused), "action": "saved", "promotion_code": "SPRING"}
    )
    assert response.status_code == 302
    assert Invoice.objects.get().total == 2320


def test_the_code_survives_the_trip_to_the_hosted_card_form(billing_client, price, spring):
    url = reverse("billing:checkout", args=[price("pro").public_id])
    token = form_token(billing_client.get(url))
    response = billing_client.post(
        url, {"form_token": token, "action": "card", "promotion_code": "spring"}
    )
    assert response.status_code == 303
    back = card_saved_on_hosted_form(billing_client, response["Location"])
    billing_client.get(back)
    assert Invoice.objects.get().total == 2320
    assert PromotionCode.objects.get().times_redeemed == 1
