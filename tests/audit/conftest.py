"""Audit test data: the billing fixtures (real services, the offline sandbox gateway) and a
signed-in staff member."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.billing.conftest import (  # noqa: F401  (fixtures)
    catalog,
    customer,
    make_customer,
    price,
    staff,
)
from tollgate.accounts.models import User


@pytest.fixture
def staff_client(client: Client, staff: User) -> Client:  # noqa: F811  (the fixture)
    client.force_login(staff)
    return client
