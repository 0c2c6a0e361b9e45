"""Members use the organisation's plan; only owners and admins manage its billing. Removing,
leaving (never the last owner), transferring ownership with the password; all audited."""

from __future__ import annotations

import pytest

from tests.conftest import STRONG_PASSWORD
from tollgate.audit.models import AuditEvent
from tollgate.billing import selectors, services
from tollgate.billing.entitlements import entitlements_for
from tollgate.integrations.customers import customer_resolve
from tollgate.organisations import services as org
from tollgate.organisations.errors import (
    BillingManagedByOthers,
    LastOwner,
    MemberNotFound,
    OwnerRequired,
    PasswordIncorrect,
)
from tollgate.organisations.models import Membership, Role
from tollgate.web.account_deletion import account_delete

pytestmark = pytest.mark.django_db


def test_members_inherit_the_plan_but_only_owners_and_admins_manage_billing(
    organisation, owner, paying, join
):
    member = join(organisation, owner, "bob@example.org").user
    admin = join(organisation, owner, "ann@example.org", role="admin").user
    for user in (owner, admin, member):
        assert entitlements_for(user=user).plan_code == "pro"
    assert selectors.customer_for(user=owner) == paying
    assert selectors.customer_for(user=admin) == paying
    assert selectors.customer_for(user=member) is None
    with pytest.raises(BillingManagedByOthers):
        services.customer_get_or_create(user=member)


def test_the_api_names_a_members_customer_by_their_account_id(
    organisation, owner, paying, join, django_capture_on_commit_callbacks
):
    member = join(organisation, owner, "bob@example.org").user
    assert customer_resolve(member.public_id).pk == paying.pk
    with django_capture_on_commit_callbacks(execute=True):
        org.member_leave(organisation=organisation, user=member)
    # Leaving drops the cached reference: the account no longer names that customer.
    with pytest.raises(Exception, match="customer"):
        customer_resolve(member.public_id)


def test_the_last_owner_cannot_leave_and_another_owner_can(organisation, owner, join):
    with pytest.raises(LastOwner):
        org.member_leave(organisation=organisation, user=owner)
    ann = join(organisation, owner, "ann@example.org", role="admin").user
    with pytest.raises(LastOwner):
        org.member_leave(organisation=organisation, user=owner)
    org.ownership_transfer(
        organisation=organisation, actor=owner, new_owner=ann, password=STRONG_PASSWORD
    )
    assert Membership.objects.get(user=ann).role == Role.OWNER
    assert Membership.objects.get(user=owner).role == Role.ADMIN
    org.member_leave(organisation=organisation, user=owner)
    assert not Membership.objects.filter(user=owner).exists()
    # Back on their own, the former owner gets their own customer again at their next billing step.
    assert services.customer_get_or_create(user=owner).organisation_id != organisation.pk


def test_transferring_ownership_needs_the_password_and_an_owner(organisation, owner, join):
    ann = join(organisation, owner, "ann@example.org", role="admin").user
    with pytest.raises(PasswordIncorrect):
        org.ownership_transfer(
            organisation=organisation, actor=owner, new_owner=ann, password="wrong"
        )
    with pytest.raises(OwnerRequired):
        org.ownership_transfer(
            organisation=organisation, actor=ann, new_owner=owner, password=STRONG_PASSWORD
        )
    assert Membership.objects.get(user=owner).role == Role.OWNER
    assert not AuditEvent.objects.filter(action="organisations.ownership_transferred").exists()


def test_removing_members_admins_remove_members_only_owners_remove_admins(
    organisation, owner, join
):
    admin = join(organisation, owner, "ann@example.org", role="admin").user
    member = join(organisation, owner, "bob@example.org").user
    other_admin = join(organisation, owner, "cy@example.org", role="admin").user
    with pytest.raises(OwnerRequired):
        org.member_remove(organisation=organisation, member=other_admin, actor=admin)
    org.member_remove(organisation=organisation, member=member, actor=admin)
    org.member_remove(organisation=organisation, member=other_admin, actor=owner)
    with pytest.raises(MemberNotFound):
        org.member_remove(organisation=organisation, member=member, actor=owner)
    assert entitlements_for(user=member).plan_code == ""
    removed = AuditEvent.objects.filter(action="organisations.member_removed")
    assert {e.details["member"] for e in removed} == {member.public_id, other_admin.public_id}
    assert all(e.target_id == organisation.public_id for e in removed)


def test_deleting_a_members_account_leaves_the_team_and_its_plan_untouched(
    organisation, owner, paying, join
):
    member = join(organisation, owner, "bob@example.org").user
    account_delete(user=member)
    assert not Membership.objects.filter(user=member).exists()
    paying.refresh_from_db()
    assert paying.email == "owner@example.org"
    assert selectors.subscription_current(customer=paying).status == "active"


def test_the_last_owner_of_a_team_cannot_delete_their_account_before_handing_it_over(
    organisation, owner, paying, join
):
    join(organisation, owner, "bob@example.org")
    with pytest.raises(LastOwner):
        account_delete(user=owner)
    owner.refresh_from_db()
    assert owner.is_active
    assert selectors.subscription_current(customer=paying).status == "active"
