"""A refused form says why on the page: a missing, mangled or expired hidden form token is the
form's error, shown where the customer sees it, not only a 422 status."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.conf import settings
from django.urls import reverse

from tests.billing.conftest import add_card, new_key
from tests.web.conftest import form_token
from tollgate.billing import services
from tollgate.core import clock
from tollgate.core.errors import FormTokenInvalid

pytestmark = pytest.mark.django_db

_ALERT = re.compile(r'role="alert">(.*?)</div>', re.S)


def alerts(response) -> str:
    """The text of every alert on the page."""
    return " ".join(
        re.sub(r"<[^>]+>", " ", alert) for alert in _ALERT.findall(response.content.decode())
    )


@pytest.fixture
def subscribed(billing_client, price, account_customer):
    add_card(account_customer)
    services.subscription_start(
        customer=account_customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    return billing_client


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("forged", id="mangled"),
        pytest.param("", id="empty"),
        pytest.param(None, id="missing"),
    ],
)
def test_a_plan_change_with_a_bad_form_token_says_why(subscribed, price, token):
    starter = price("starter")
    data = {"price": starter.public_id}
    if token is not None:
        data["form_token"] = token
    response = subscribed.post(reverse("billing:change_plan"), data)
    assert response.status_code == 422
    assert FormTokenInvalid.default_message in alerts(response)
    again = subscribed.post(
        reverse("billing:change_plan"),
        {"form_token": form_token(response), "price": starter.public_id},
    )
    assert again.status_code == 302  # the page shown again carries a fresh token


def test_a_plan_change_with_an_expired_form_token_says_why(subscribed, price):
    starter = price("starter")
    url = f"{reverse('billing:change_plan')}?price={starter.public_id}"
    retention = dt.timedelta(hours=settings.IDEMPOTENCY_RETENTION_HOURS)
    with clock.frozen(clock.now() - retention - dt.timedelta(minutes=5)):
        stale = form_token(subscribed.get(url))
    response = subscribed.post(
        reverse("billing:change_plan"), {"form_token": stale, "price": starter.public_id}
    )
    assert response.status_code == 422
    assert FormTokenInvalid.default_message in alerts(response)


def test_a_cancellation_with_a_bad_form_token_says_why(subscribed):
    response = subscribed.post(reverse("billing:cancel"), {"reason": "too_expensive"})
    assert response.status_code == 422
    assert FormTokenInvalid.default_message in alerts(response)


@pytest.mark.parametrize("token", [None, "forged"], ids=["missing", "mangled"])
def test_a_checkout_with_a_bad_form_token_says_why(billing_client, price, token):
    url = reverse("billing:checkout", args=[price("pro").public_id])
    data = {"action": "card"} if token is None else {"action": "card", "form_token": token}
    response = billing_client.post(url, data)
    assert response.status_code == 422
    assert FormTokenInvalid.default_message in alerts(response)
    again = billing_client.post(url, {"action": "card", "form_token": form_token(response)})
    assert again.status_code == 303, alerts(again)  # on to the hosted card form


def test_a_plan_change_without_a_plan_says_to_choose_one(subscribed, price):
    page = subscribed.get(f"{reverse('billing:change_plan')}?price={price('starter').public_id}")
    response = subscribed.post(
        reverse("billing:change_plan"), {"form_token": form_token(page)}, follow=True
    )
    assert "Choose the plan to change to" in response.content.decode()
