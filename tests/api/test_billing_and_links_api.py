"""Subscriptions and invoices read through the API, receipt links, and the checkout and portal
links that sign a customer in without a password."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from tollgate.audit.models import AuditEvent
from tollgate.billing.models import Subscription
from tollgate.core import clock

pytestmark = pytest.mark.django_db

APP = "https://app.example.com"


@pytest.fixture(autouse=True)
def _product_host(settings):
    settings.API_REDIRECT_HOSTS = ["app.example.com"]


def test_subscriptions_and_invoices_are_listed_and_read(api, make_api_customer, subscribe):
    customer = make_api_customer("u1")
    subscription = subscribe(customer, "pro")
    make_api_customer("u2")
    listed = api.get("/subscriptions", customer="u1").json()
    assert [s["id"] for s in listed["data"]] == [subscription.public_id]
    one = api.get(f"/subscriptions/{subscription.public_id}").json()
    assert (one["status"], one["plan"], one["price"]["amount"], one["customer_external_id"]) == (
        "active",
        "pro",
        2900,
        "u1",
    )
    assert api.get("/subscriptions", status="active").json()["data"][0]["id"] == one["id"]
    assert api.get("/subscriptions", status="bogus").status_code == 422
    invoices = api.get("/invoices", customer="u1").json()["data"]
    assert [(i["status"], i["total"], i["amount_paid"]) for i in invoices] == [("paid", 2900, 2900)]
    invoice = api.get(f"/invoices/{invoices[0]['id']}").json()
    assert invoice["number"]
    assert invoice["receipt_pdf_url"].startswith("http")
    assert api.get("/invoices/inv_nothing").status_code == 404
    assert api.get("/subscriptions/sub_nothing").status_code == 404


def test_a_receipt_link_gives_the_pdf_without_signing_in_for_an_hour(
    api, make_api_customer, subscribe
):
    subscribe(make_api_customer("u1"), "pro")
    url = api.get("/invoices", customer="u1").json()["data"][0]["receipt_pdf_url"]
    path = url.split("://", 1)[1].split("/", 1)[1]
    anonymous = Client()
    pdf = anonymous.get(f"/{path}")
    assert pdf.status_code == 200
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    with clock.frozen(clock.now() + dt.timedelta(hours=2)):
        assert anonymous.get(f"/{path}").status_code == 400
    assert anonymous.get("/billing/receipts/forged/").status_code == 400


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def test_a_checkout_link_signs_the_customer_in_once_and_returns_them_to_the_product(
    api, make_api_customer, plan_price
):
    customer = make_api_customer("u1")
    response = api.post(
        "/checkout-links",
        {
            "customer": "u1",
            "plan": "pro",
            "success_url": f"{APP}/done",
            "cancel_url": f"{APP}/pricing",
        },
    )
    assert response.status_code == 201, response.content
    link = response.json()
    browser = Client()
    landed = browser.get(_path(link["url"]))
    assert landed.status_code == 302
    assert landed["Location"] == f"/billing/checkout/{plan_price('pro').public_id}/"
    assert landed["Referrer-Policy"] == "no-referrer"
    page = browser.get(landed["Location"])
    assert page.status_code == 200
    assert f'href="{APP}/pricing"' in page.content.decode()
    assert AuditEvent.objects.filter(
        action="account.signed_in_by_checkout_link", target_id=customer.user.public_id
    ).exists()
    again = Client().get(_path(link["url"]))
    assert again.status_code == 400
    assert "expired or was used already" in again.content.decode()


def test_after_a_checkout_from_a_link_the_result_page_leads_back_to_the_product(
    api, make_api_customer, plan_price
):
    make_api_customer("u1")
    link = api.post(
        "/checkout-links", {"customer": "u1", "plan": "pro", "success_url": f"{APP}/done"}
    ).json()
    browser = Client()
    browser.get(_path(link["url"]))
    from tests.billing.conftest import add_card
    from tollgate.billing.models import Customer

    customer = Customer.objects.get(external_id="u1")
    add_card(customer)
    page = browser.get(f"/billing/checkout/{plan_price('pro').public_id}/")
    token = page.context["form"]["form_token"].value()
    browser.post(page.request["PATH_INFO"], {"action": "saved", "form_token": token})
    result = browser.get("/billing/checkout/return/").content.decode()
    assert f'href="{APP}/done"' in result
    assert Subscription.objects.get(customer=customer).status == "active"


def test_checkout_links_refuse_other_hosts_taken_customers_and_prices_not_on_sale(
    api, make_api_customer, subscribe, plan_price
):
    make_api_customer("u1")
    evil = api.post(
        "/checkout-links",
        {"customer": "u1", "plan": "pro", "success_url": "https://evil.example.net/"},
    )
    assert evil.status_code == 422
    assert evil.json()["error"]["code"] == "redirect_host_not_allowed"
    js = api.post(
        "/checkout-links", {"customer": "u1", "plan": "pro", "success_url": "javascript:alert(1)"}
    )
    assert js.status_code == 422
    missing = api.post(
        "/checkout-links", {"customer": "u1", "price": "price_nope", "success_url": f"{APP}/"}
    )
    assert missing.status_code == 404
    subscribe(make_api_customer("u2"), "pro")
    taken = api.post("/checkout-links", {"customer": "u2", "plan": "pro", "success_url": f"{APP}/"})
    assert taken.status_code == 409


def test_a_portal_link_opens_the_billing_pages_for_five_minutes_once(
    api, make_api_customer, subscribe
):
    subscribe(make_api_customer("u1"), "pro")
    link = api.post("/portal-links", {"customer": "u1", "return_url": f"{APP}/settings"}).json()
    browser = Client()
    landed = browser.get(_path(link["url"]))
    assert landed["Location"] == "/billing/"
    dashboard = browser.get("/billing/").content.decode()
    assert "Back to app.example.com" in dashboard
    assert Client().get(_path(link["url"])).status_code == 400
    late = api.post("/portal-links", {"customer": "u1"}).json()
    with clock.frozen(clock.now() + dt.timedelta(minutes=6)):
        assert Client().get(_path(late["url"])).status_code == 400


def test_a_link_signs_out_whoever_was_signed_in_in_that_browser(api, make_api_customer, make_user):
    make_api_customer("u1")
    other = make_user(email="other@example.org")
    browser = Client()
    browser.force_login(other)
    link = api.post("/portal-links", {"customer": "u1"}).json()
    browser.get(_path(link["url"]))
    assert int(browser.session["_auth_user_id"]) != other.pk


def test_links_are_never_made_for_staff_accounts(api, make_api_customer):
    customer = make_api_customer("u1")
    customer.user.is_staff = True
    customer.user.save()
    assert api.post("/portal-links", {"customer": "u1"}).status_code == 422


def test_a_forged_link_is_refused(client):
    assert client.get("/billing/link/not-a-token/").status_code == 400


def test_used_links_are_forgotten_once_every_link_of_their_day_has_expired(api, make_api_customer):
    from tollgate.integrations.models import SignedLinkUse
    from tollgate.integrations.tasks import signed_link_uses_purge_task

    make_api_customer("u1")
    link = api.post("/portal-links", {"customer": "u1"}).json()
    Client().get(_path(link["url"]))
    assert SignedLinkUse.objects.count() == 1
    signed_link_uses_purge_task.call_local()
    assert SignedLinkUse.objects.count() == 1  # its link could still be presented
    with clock.frozen(clock.now() + dt.timedelta(hours=26)):
        signed_link_uses_purge_task.call_local()
    assert SignedLinkUse.objects.count() == 0
