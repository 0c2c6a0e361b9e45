"""Two owners leaving at once on PostgreSQL: the organisation's row lock serializes them, so one
of them stays (an organisation never ends without an owner)."""

from __future__ import annotations

import pytest
from django.db import connection

from tests import concurrency
from tests.conftest import STRONG_PASSWORD
from tollgate.organisations import services as org
from tollgate.organisations.errors import LastOwner
from tollgate.organisations.models import Membership, Role

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row locks under real concurrency need PostgreSQL (SQLite serializes all writers)",
    ),
]


def test_the_last_two_owners_leaving_at_once_leave_one_owner(organisation, owner, join):
    ann = join(organisation, owner, "ann@example.org", role="admin").user
    org.ownership_transfer(
        organisation=organisation, actor=owner, new_owner=ann, password=STRONG_PASSWORD
    )
    Membership.objects.filter(user=owner).update(role=Role.OWNER)  # two owners
    owners = [owner, ann]

    outcomes = concurrency.race(
        lambda i: org.member_leave(organisation=organisation, user=owners[i]), 2, timeout=60
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["LastOwner", "NoneType"], outcomes
    assert any(isinstance(o, LastOwner) for o in outcomes)
    assert Membership.objects.filter(organisation=organisation, role=Role.OWNER).count() == 1
