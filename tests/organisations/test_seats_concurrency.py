"""Invitations racing for the last free seat on PostgreSQL: the organisation's row lock serializes
them, so exactly as many are sent as there are free seats."""

from __future__ import annotations

import pytest
from django.db import connection

from tests import concurrency
from tests.billing.conftest import add_card, new_key
from tests.billing.services.test_seats import SEATS_CATALOG
from tollgate.billing import services
from tollgate.billing.errors import NoFreeSeat
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load
from tollgate.organisations import services as org
from tollgate.organisations.models import Invitation

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row locks under real concurrency need PostgreSQL (SQLite serializes all writers)",
    ),
]


def test_five_invitations_for_two_free_seats_send_two(owner):
    catalog_load(document=SEATS_CATALOG)
    customer = services.customer_get_or_create(user=owner)
    add_card(customer)
    services.subscription_start(
        customer=customer,
        price=Price.objects.get(plan__code="team", active=True),
        trial=False,
        seats=3,
        idempotency_key=new_key(),
    )
    customer.refresh_from_db()
    organisation = customer.organisation

    outcomes = concurrency.race(
        lambda i: org.invitation_create(
            organisation=organisation, email=f"p{i}@example.org", role="member", actor=owner
        ),
        5,
        timeout=60,
    )
    refused = [o for o in outcomes if isinstance(o, NoFreeSeat)]
    assert len(refused) == 3, outcomes
    assert Invitation.objects.filter(organisation=organisation).count() == 2
