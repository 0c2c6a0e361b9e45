"""Billing test data, built through the real services and the real (offline) sandbox gateway."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest

from tollgate.accounts.models import User
from tollgate.billing import services
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.billing.models import Customer, PaymentMethod
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load

CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
CARD_INSUFFICIENT_FUNDS = "4000000000009995"
CARD_DECLINES_AFTER_ATTACH = "4000000000000341"
CARD_REQUIRES_AUTHENTICATION = "4000002500003155"
CARD_STOLEN = "4000000000009979"
CARD_TIMES_OUT = "4000000000000408"

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
                    "prices": [
                        {"amount": 900, "currency": "USD", "interval": "month"},
                        {"amount": 9000, "currency": "USD", "interval": "year"},
                    ],
                },
                {
                    "code": "pro",
                    "name": "Pro",
                    "prices": [{"amount": 2900, "currency": "USD", "interval": "month"}],
                },
                {
                    "code": "free",
                    "name": "Free",
                    "prices": [{"amount": 0, "currency": "USD", "interval": "month"}],
                },
            ],
        }
    ]
}


def new_key() -> str:
    """A fresh idempotency key: each call to a keyed service with one is a new request."""
    return f"test-{secrets.token_hex(8)}"


def add_card(customer: Customer, number: str = CARD_OK) -> PaymentMethod:
    """The customer adds a card on the sandbox's hosted form; Tollgate attaches it."""
    session = services.payment_method_setup_start(
        customer=customer, return_url="https://tollgate.test/billing/"
    )
    SandboxGateway().setup_submit(
        session_reference=session.reference, number=number, exp_month=12, exp_year=2099
    )
    return services.payment_method_attach(customer=customer, setup_reference=session.reference)


@pytest.fixture
def catalog(db: Any) -> None:
    catalog_load(document=CATALOG)


@pytest.fixture
def price(catalog: None) -> Callable[..., Price]:
    def find(plan: str = "pro", interval: str = "month") -> Price:
        return Price.objects.get(plan__code=plan, interval=interval, active=True)

    return find


@pytest.fixture
def make_customer(db: Any) -> Callable[..., Customer]:
    def factory(email: str = "payer@example.org") -> Customer:
        user = User.objects.create_user(email=email, password="correct-horse-battery-staple-42")
        return services.customer_get_or_create(user=user)

    return factory


@pytest.fixture
def customer(make_customer: Callable[..., Customer]) -> Customer:
    return make_customer()


@pytest.fixture
def staff(db: Any) -> User:
    return User.objects.create_user(
        email="staff@example.org", password="correct-horse-battery-staple-42", is_staff=True
    )
