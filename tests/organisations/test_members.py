"""Members use the organisation's plan; only owners and admins manage its billing. Removing,
leaving (never the last owner), transferring ownership with the password; all audited."""

from __future__ import annotations

import pytest

from tests.conftest import STRONG_PASSWORD
from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.billing import selectors, services
from tollgate.billing.entitlements import entitlements_for
from tollgate.core.errors import ValidationFailed
from tollgate.integrations.customers import customer_resolve
from tollgate.organisations import services as org
from tollgate.organisations.errors import (
    BillingManagedByOthers,
    LastOwner,
    MemberNotFound,
    OwnerRequired,
    OwnerRoleFixed,
    PasswordIncorrect,
)
from tollgate.organisations.models import Membership, Role
from tollgate.organisations.selectors import role_of
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


def test_an_owner_makes_a_member_an_admin_and_back_and_each_change_is_audited(
    organisation, owner, join, django_capture_on_commit_callbacks
):
    bob = join(organisation, owner, "bob@example.org").user
    assert role_of(user=bob) == "member"  # cached now
    with django_capture_on_commit_callbacks(execute=True):
        org.member_role_change(organisation=organisation, member=bob, role="admin", actor=owner)
    assert Membership.objects.get(user=bob).role == Role.ADMIN
    assert role_of(user=bob) == "admin"  # the cached role was dropped after commit
    assert selectors.customer_for(user=bob) is not None  # an admin manages billing
    org.member_role_change(organisation=organisation, member=bob, role="member", actor=owner)
    assert Membership.objects.get(user=bob).role == Role.MEMBER
    changes = AuditEvent.objects.filter(action="organisations.member_role_changed").order_by("pk")
    assert [(e.details["from"], e.details["to"]) for e in changes] == [
        ("member", "admin"),
        ("admin", "member"),
    ]
    assert {(e.target_id, e.details["member"]) for e in changes} == {
        (organisation.public_id, bob.public_id)
    }


def test_giving_the_role_a_member_has_already_changes_nothing_and_records_nothing(
    organisation, owner, join
):
    bob = join(organisation, owner, "bob@example.org").user
    org.member_role_change(organisation=organisation, member=bob, role="member", actor=owner)
    assert Membership.objects.get(user=bob).role == Role.MEMBER
    assert not AuditEvent.objects.filter(action="organisations.member_role_changed").exists()


def test_only_an_owner_changes_roles_and_only_between_admin_and_member(organisation, owner, join):
    admin = join(organisation, owner, "ann@example.org", role="admin").user
    member = join(organisation, owner, "bob@example.org").user
    with pytest.raises(OwnerRequired):
        org.member_role_change(organisation=organisation, member=member, role="admin", actor=admin)
    with pytest.raises(OwnerRequired):
        org.member_role_change(organisation=organisation, member=admin, role="member", actor=member)
    with pytest.raises(ValidationFailed) as refused:
        org.member_role_change(organisation=organisation, member=member, role="owner", actor=owner)
    assert refused.value.details == {"field": "role"}
    with pytest.raises(OwnerRoleFixed):
        org.member_role_change(organisation=organisation, member=owner, role="admin", actor=owner)
    assert dict(Membership.objects.values_list("user__email", "role")) == {
        "owner@example.org": "owner",
        "ann@example.org": "admin",
        "bob@example.org": "member",
    }
    assert not AuditEvent.objects.filter(action="organisations.member_role_changed").exists()


def test_the_role_of_someone_outside_the_organisation_is_not_changed(organisation, owner):
    stranger = User.objects.create_user(email="eve@example.org", password=STRONG_PASSWORD)
    with pytest.raises(MemberNotFound):
        org.member_role_change(
            organisation=organisation, member=stranger, role="admin", actor=owner
        )
