"""Paying an open invoice from its page: with the saved card, or by confirming with the bank."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.billing.conftest import (
    CARD_DECLINES_AFTER_ATTACH,
    CARD_OK,
    CARD_REQUIRES_AUTHENTICATION,
    add_card,
    make_customer,  # noqa: F401  (fixture)
    new_key,
)
from tests.web.conftest import form_token
from tollgate.billing import periods, services
from tollgate.billing.models import Invoice, PaymentAttempt
from tollgate.billing.states import InvoiceStatus, PaymentStatus

pytestmark = pytest.mark.django_db


def open_invoice(customer, price, card: str = CARD_OK) -> Invoice:
    """An active Pro subscription paid with a good card, then ``card`` saved, and the next period's
    invoice open (finalized, not charged yet)."""
    add_card(customer, CARD_OK)
    subscription = services.subscription_start(
        customer=customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    if card != CARD_OK:
        add_card(customer, card)
    return services.invoice_create_for_period(
        subscription=subscription,
        period=periods.period_number(anchor=subscription.billing_anchor, months=1, index=1),
    )


def pay(client, invoice: Invoice):
    page = client.get(reverse("billing:invoice", args=[invoice.public_id]))
    assert page.status_code == 200
    return client.post(
        reverse("billing:invoice_pay", args=[invoice.public_id]),
        {"form_token": form_token(page)},
        follow=True,
    )


def test_an_open_invoice_is_paid_now_with_the_saved_card(billing_client, price, account_customer):
    invoice = open_invoice(account_customer, price)
    page = billing_client.get(reverse("billing:invoice", args=[invoice.public_id])).content.decode()
    assert "Pay $29.00 now" in page
    assert "Visa ending in 4242" in page
    done = pay(billing_client, invoice)
    assert "is paid" in done.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert "Pay $29.00 now" not in done.content.decode()


def test_a_declined_payment_says_why_and_the_invoice_stays_open(
    billing_client, price, account_customer
):
    invoice = open_invoice(account_customer, price, CARD_DECLINES_AFTER_ATTACH)
    done = pay(billing_client, invoice)
    assert "Your bank declined the payment without giving a reason." in done.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    assert "Pay $29.00 now" in done.content.decode()  # another attempt may be made


def test_a_payment_the_bank_wants_confirmed_links_to_the_bank(
    billing_client, price, account_customer
):
    invoice = open_invoice(account_customer, price, CARD_REQUIRES_AUTHENTICATION)
    done = pay(billing_client, invoice).content.decode()
    payment = PaymentAttempt.objects.get(invoice=invoice)
    assert payment.status == PaymentStatus.REQUIRES_ACTION
    assert f'href="{payment.action_url}"' in done
    assert "Confirm the payment with your bank" in done
    assert "Pay $29.00 now" not in done  # a payment is in progress


def test_submitting_the_payment_twice_charges_once(billing_client, price, account_customer):
    invoice = open_invoice(account_customer, price)
    page = billing_client.get(reverse("billing:invoice", args=[invoice.public_id]))
    token = form_token(page)
    url = reverse("billing:invoice_pay", args=[invoice.public_id])
    for _ in range(2):
        assert billing_client.post(url, {"form_token": token}).status_code == 303
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1


def test_only_the_owner_can_pay_and_only_by_post(billing_client, price, make_customer):  # noqa: F811
    other = make_customer(email="other@example.org")
    invoice = open_invoice(other, price)
    url = reverse("billing:invoice_pay", args=[invoice.public_id])
    assert billing_client.post(url, {"form_token": "x"}).status_code == 404
    assert billing_client.get(url).status_code == 405


def test_a_paid_invoice_offers_no_payment(billing_client, price, account_customer):
    add_card(account_customer, CARD_OK)
    subscription = services.subscription_start(
        customer=account_customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    invoice = subscription.invoices.get()
    page = billing_client.get(reverse("billing:invoice", args=[invoice.public_id]))
    assert "now</button>" not in page.content.decode()
    # A forged or stale submission is refused without touching the invoice.
    url = reverse("billing:invoice_pay", args=[invoice.public_id])
    assert billing_client.post(url, {"form_token": "forged"}).status_code == 303
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1
