"""Organisation test data, built through the real services: an owner whose customer pays for a
plan, and people who join it by invitation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.billing.conftest import add_card, catalog, new_key, price  # noqa: F401  (fixtures)
from tests.conftest import STRONG_PASSWORD
from tollgate.accounts.models import User
from tollgate.billing import services
from tollgate.billing.models import Customer
from tollgate.organisations import services as org_services
from tollgate.organisations.models import Membership, Organisation


@pytest.fixture
def owner(db: Any) -> User:
    return User.objects.create_user(email="owner@example.org", password=STRONG_PASSWORD)


@pytest.fixture
def paying(owner: User, price: Callable[..., Any]) -> Customer:  # noqa: F811
    """The owner's customer, subscribed to Pro with a card."""
    customer = services.customer_get_or_create(user=owner)
    add_card(customer)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    return customer


@pytest.fixture
def organisation(paying: Customer) -> Organisation:
    assert paying.organisation is not None
    return paying.organisation


@pytest.fixture
def join(
    django_capture_on_commit_callbacks: Any,
) -> Callable[..., Membership]:
    """``join(organisation, by, email, role)``: invite ``email`` and accept as a new account."""

    def joined(
        organisation: Organisation, by: User, email: str, role: str = "member"
    ) -> Membership:
        sent = org_services.invitation_create(
            organisation=organisation, email=email, role=role, actor=by
        )
        user = User.objects.filter(email=email).first() or User.objects.create_user(
            email=email, password=STRONG_PASSWORD
        )
        with django_capture_on_commit_callbacks(execute=True):
            return org_services.invitation_accept(token=sent.token, user=user)

    return joined
