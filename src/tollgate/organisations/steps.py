"""Pieces that run inside a caller's transaction (billing's customer creation): never open one."""

from __future__ import annotations

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.organisations.cache import membership_changed
from tollgate.organisations.models import Membership, Organisation, Role


def personal_organisation_create_locked(*, user: User, name: str = "") -> Organisation:
    """A personal organisation with ``user`` as its owner. The caller holds the account's row lock
    and has checked that the account belongs to no organisation."""
    organisation = Organisation.objects.create(name=name, personal=True)
    Membership.objects.create(organisation=organisation, user=user, role=Role.OWNER)
    membership_changed(user=user)
    audit_record(
        action="organisations.created", actor=user, target=organisation, details={"personal": True}
    )
    return organisation


def owner_membership_restore_locked(*, user: User, organisation: Organisation) -> Membership:
    """Make ``user`` the owner of their own earlier organisation again (after they left a team)."""
    membership = Membership.objects.create(organisation=organisation, user=user, role=Role.OWNER)
    membership_changed(user=user)
    audit_record(action="organisations.owner_restored", actor=user, target=organisation)
    return membership
