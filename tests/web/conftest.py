"""The customer's billing pages through the Django test client, with the real services and the real
(offline) sandbox gateway and its hosted card form."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from tests.billing.conftest import (  # noqa: F401  (fixtures)
    CARD_OK,
    CATALOG,
    customer,
    make_customer,
    price,
    staff,
)
from tests.conftest import STRONG_PASSWORD
from tollgate.accounts.models import User
from tollgate.billing import services
from tollgate.billing.models import Customer
from tollgate.catalog.services import catalog_load

# The billing tests' catalog, with what each plan entitles to (for the upgrade prompts).
_ENTITLEMENTS = {
    "starter": ({"api_access": False}, {"projects": 3}),
    "pro": ({"api_access": True}, {"projects": 25}),
    "free": ({"api_access": False}, {"projects": 1}),
}
WEB_CATALOG = {
    "products": [
        {
            **product,
            "plans": [
                {
                    **plan,
                    "features": _ENTITLEMENTS[plan["code"]][0],
                    "limits": _ENTITLEMENTS[plan["code"]][1],
                }
                for plan in product["plans"]
            ],
        }
        for product in CATALOG["products"]
    ]
}

_FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


def form_token(response: Any) -> str:
    """The hidden single-use token of the form on a rendered page."""
    match = _FORM_TOKEN.search(response.content.decode())
    assert match, "no form token on the page"
    return match.group(1)


def card_saved_on_hosted_form(client: Client, hosted_url: str, number: str = CARD_OK) -> str:
    """The customer types a test card into the sandbox's hosted form; returns the URL the form
    sends the browser back to."""
    path = urlsplit(hosted_url).path
    assert client.get(path).status_code == 200
    response = client.post(
        path, {"number": number, "expiry": "12/34", "cvc": "123", "name": "Jo Payer"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    return str(response["Location"])


@pytest.fixture
def catalog(db: Any) -> None:
    catalog_load(document=WEB_CATALOG)


@pytest.fixture
def account(make_user: Callable[..., User]) -> User:
    return make_user(email="payer@example.org")


@pytest.fixture
def billing_client(client: Client, account: User) -> Client:
    response = client.post(
        "/accounts/login/", {"login": account.email, "password": STRONG_PASSWORD}
    )
    assert response.status_code == 302
    return client


@pytest.fixture
def account_customer(account: User) -> Customer:
    return services.customer_get_or_create(user=account)
