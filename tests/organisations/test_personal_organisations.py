"""Every account's billing customer belongs to a personal organisation with the account as its
owner; customers written before organisations existed keep working and are backfilled."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import IntegrityError, connection, transaction

from tests.conftest import STRONG_PASSWORD
from tollgate.accounts.models import User
from tollgate.billing import selectors, services
from tollgate.billing.entitlements import entitlements_for
from tollgate.billing.migrations import __name__ as billing_migrations
from tollgate.billing.models import Customer
from tollgate.organisations.models import Membership, Organisation, Role

pytestmark = pytest.mark.django_db

backfill = __import__(
    f"{billing_migrations}.0012_customer_organisation_backfill", fromlist=["backfill"]
).backfill


class _SchemaEditor:
    connection = connection


def test_a_new_customer_gets_a_personal_organisation_owned_by_its_account(owner):
    customer = services.customer_get_or_create(user=owner)
    assert customer.organisation is not None
    assert customer.organisation.personal
    membership = Membership.objects.get(user=owner)
    assert (membership.organisation_id, membership.role) == (customer.organisation_id, Role.OWNER)
    assert selectors.customer_for(user=owner) == customer
    assert services.customer_get_or_create(user=owner) == customer
    assert Organisation.objects.count() == 1


def test_a_customer_from_before_organisations_keeps_working_and_gets_one_at_its_next_step():
    user = User.objects.create_user(email="old@example.org", password=STRONG_PASSWORD)
    legacy = Customer.objects.create(user=user, email=user.email)  # what the old release wrote
    assert selectors.customer_for(user=user) == legacy
    assert entitlements_for(user=user).plan_code == ""
    again = services.customer_get_or_create(user=user)
    assert again.pk == legacy.pk
    assert again.organisation_id is not None
    assert Membership.objects.get(user=user).role == Role.OWNER


def test_the_backfill_gives_each_customer_its_personal_organisation_once():
    users = [
        User.objects.create_user(email=f"u{i}@example.org", password=STRONG_PASSWORD)
        for i in range(3)
    ]
    legacy = [
        Customer.objects.create(user=u, email=u.email, name=f"N{i}") for i, u in enumerate(users)
    ]
    backfill(apps, _SchemaEditor())
    backfill(apps, _SchemaEditor())  # running again changes nothing
    assert Organisation.objects.count() == 3
    for customer, user in zip(legacy, users, strict=True):
        customer.refresh_from_db()
        assert customer.organisation is not None
        assert customer.organisation.name == customer.name
        membership = Membership.objects.get(user=user)
        assert (membership.organisation_id, membership.role) == (
            customer.organisation_id,
            Role.OWNER,
        )


def test_the_organisation_link_is_unique_and_a_foreign_key_on_every_database(owner):
    customer = services.customer_get_or_create(user=owner)
    other = User.objects.create_user(email="other@example.org", password=STRONG_PASSWORD)
    second = services.customer_get_or_create(user=other)
    with pytest.raises(IntegrityError), transaction.atomic():
        Customer.objects.filter(pk=second.pk).update(organisation=customer.organisation)
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, Customer._meta.db_table)
    on_column = [c for c in found.values() if c["columns"] == ["organisation_id"]]
    assert any(c["unique"] for c in on_column)
    assert any(c["foreign_key"] == ("organisations_organisation", "id") for c in on_column)
