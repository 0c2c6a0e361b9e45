"""Seats on the billing pages: the checkout of a per-seat plan asks how many (at least one per
member) and shows the total; the seats page previews more seats (prorated, charged now) or fewer
(from the period end) and confirms; a plan without seats has no seats page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.billing.conftest import add_card, new_key
from tests.billing.services.test_seats import SEATS_CATALOG
from tests.conftest import STRONG_PASSWORD
from tests.web.conftest import form_token
from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.models import Invoice, Subscription
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load
from tollgate.organisations import services as org_services
from tollgate.organisations.models import Invitation

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(db) -> Price:
    catalog_load(document=SEATS_CATALOG)
    return Price.objects.get(plan__code="team", active=True)


@pytest.fixture
def subscribed(account_customer, team) -> Subscription:
    add_card(account_customer)
    return services.subscription_start(
        customer=account_customer, price=team, trial=False, seats=3, idempotency_key=new_key()
    )


def test_the_checkout_of_a_per_seat_plan_shows_the_total_for_the_seats(billing_client, team):
    url = reverse("billing:checkout", args=[team.public_id])
    page = billing_client.get(url)
    text = page.content.decode()
    assert "$10.00 per seat per month" in text
    assert "$10.00 per month for 1 seat" in text
    updated = billing_client.post(
        url, {"form_token": form_token(page), "action": "update", "seats": "4"}
    )
    assert updated.status_code == 200
    assert "$40.00 per month for 4 seats" in updated.content.decode()
    assert not Subscription.objects.exists()


def test_subscribing_pays_for_the_seats_chosen(billing_client, team, account_customer):
    add_card(account_customer)
    url = reverse("billing:checkout", args=[team.public_id])
    token = form_token(billing_client.get(url))
    response = billing_client.post(url, {"form_token": token, "action": "pay_now", "seats": "5"})
    assert response.status_code == 302
    subscription = Subscription.objects.get()
    assert (subscription.seats, subscription.status) == (5, "active")
    assert Invoice.objects.get().total == 5000


def test_the_checkout_refuses_fewer_seats_than_members(
    billing_client, team, account, account_customer, django_capture_on_commit_callbacks
):
    sent = org_services.invitation_create(
        organisation=account_customer.organisation,
        email="mate@example.org",
        role="member",
        actor=account,
    )
    mate = User.objects.create_user(email="mate@example.org", password=STRONG_PASSWORD)
    with django_capture_on_commit_callbacks(execute=True):
        org_services.invitation_accept(token=sent.token, user=mate)
    add_card(account_customer)
    url = reverse("billing:checkout", args=[team.public_id])
    token = form_token(billing_client.get(url))
    page = billing_client.post(url, {"form_token": token, "action": "saved", "seats": "1"})
    assert page.status_code == 422
    assert "Your organisation has 2 members: choose at least 2 seats." in page.content.decode()
    assert not Subscription.objects.exists()


def test_more_seats_are_previewed_then_charged(billing_client, subscribed):
    url = reverse("billing:seats")
    page = billing_client.get(url, {"seats": "5"})
    assert page.status_code == 200
    text = page.content.decode()
    assert 'id="seats-preview"' in text
    assert "5 seats: $50.00 per month" in text
    assert "Confirm and pay" in text
    response = billing_client.post(url, {"form_token": form_token(page), "seats": "5"})
    assert response.status_code == 302
    subscribed.refresh_from_db()
    assert subscribed.seats == 5
    invoice = Invoice.objects.get(billing_reason="subscription_update")
    assert invoice.status == "paid"
    assert AuditEvent.objects.filter(action="billing.subscription_seats_changed").count() == 1
    dashboard = billing_client.get(reverse("billing:dashboard")).content.decode()
    assert "5 ($50.00 per month)" in dashboard


def test_fewer_seats_are_scheduled_for_the_period_end(billing_client, subscribed):
    url = reverse("billing:seats")
    page = billing_client.get(url, {"seats": "2"})
    assert "Nothing is charged or refunded now" in page.content.decode()
    response = billing_client.post(url, {"form_token": form_token(page), "seats": "2"})
    assert response.status_code == 302
    subscribed.refresh_from_db()
    assert (subscribed.seats, subscribed.scheduled_seats) == (3, 2)
    assert not Invoice.objects.filter(billing_reason="subscription_update").exists()
    dashboard = billing_client.get(reverse("billing:dashboard")).content.decode()
    assert "; 2 from " in dashboard


@pytest.mark.parametrize(
    ("asked", "message"),
    [("0", "whole number of seats"), ("abc", "whole number of seats"), ("10000000", "whole")],
)
def test_a_seat_count_that_cannot_be_is_refused_with_a_reason(
    billing_client, subscribed, asked, message
):
    page = billing_client.get(reverse("billing:seats"), {"seats": asked})
    assert page.status_code == 422
    assert message in page.content.decode()


def test_a_forged_post_below_the_members_is_refused_on_the_page(
    billing_client, subscribed, account, django_capture_on_commit_callbacks
):
    for email in ("a@example.org", "b@example.org"):
        sent = org_services.invitation_create(
            organisation=subscribed.customer.organisation, email=email, role="member", actor=account
        )
        user = User.objects.create_user(email=email, password=STRONG_PASSWORD)
        with django_capture_on_commit_callbacks(execute=True):
            org_services.invitation_accept(token=sent.token, user=user)
    url = reverse("billing:seats")
    token = form_token(billing_client.get(url, {"seats": "4"}))
    page = billing_client.post(url, {"form_token": token, "seats": "2"})
    assert page.status_code == 422
    text = page.content.decode()
    assert "A plan priced per seat needs a seat for every member: remove members first" in text
    assert "Your organisation has 3 members: keep at least 3 seats." in text
    subscribed.refresh_from_db()
    assert (subscribed.seats, subscribed.scheduled_seats) == (3, None)


def test_a_flat_plan_has_no_seats_page(billing_client, price, account_customer):
    add_card(account_customer)
    services.subscription_start(
        customer=account_customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    response = billing_client.get(reverse("billing:seats"))
    assert response.status_code == 302
    dashboard = billing_client.get(reverse("billing:dashboard")).content.decode()
    assert "Change seats" not in dashboard


def test_the_api_reports_the_seats(subscribed):
    from tollgate.integrations.representations import subscription_data

    data = subscription_data(subscribed)
    assert (data["seats"], data["scheduled_seats"], data["price"]["per_seat"]) == (3, None, True)


def test_the_organisation_page_counts_the_seats_taken_and_refuses_an_invitation_when_full(
    billing_client, subscribed
):
    invite = reverse("web:organisation_invite")
    for email in ("a@example.org", "b@example.org"):
        billing_client.post(invite, {"email": email, "role": "member"})
    page = billing_client.get(reverse("web:organisation")).content.decode()
    assert "3 of 3 seats taken (members and invitations waiting)" in page
    assert "every seat is taken, so add one before you invite someone" in page
    response = billing_client.post(
        invite, {"email": "c@example.org", "role": "member"}, follow=True
    )
    assert "Every seat of your organisation&#x27;s plan is taken" in response.content.decode()
    assert not Invitation.objects.filter(email="c@example.org").exists()
