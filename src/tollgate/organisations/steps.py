"""Pieces that run inside a caller's transaction (billing's customer creation, the legacy import):
never open one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.core.outbox import outbox_batch
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


@dataclass(frozen=True, slots=True)
class PersonalOwner:
    """An account to get a personal organisation in a batch (see
    :func:`personal_organisations_create_locked`)."""

    user_id: int
    name: str
    created_at: dt.datetime
    # Created in the caller's transaction: nothing can be cached about it yet.
    new: bool


def personal_organisations_create_locked(*, owners: Sequence[PersonalOwner]) -> list[Organisation]:
    """What :func:`personal_organisation_create_locked` does, set-wise for a batch of accounts (the
    legacy import): one personal organisation per entry of ``owners``, returned in their order,
    each account its owner; a few statements whatever the batch size. The caller audits the batch
    (with the number of organisations): an event per organisation would cost as much again.
    An account that belongs to an organisation already keeps it, and its new organisation has no
    member (as billing's backfill, migration 0012, leaves it). What is cached about accounts that
    are not new is dropped after commit. The caller holds the rows of the accounts that are not
    new, and links each organisation to its billing customer."""
    if not owners:
        return []
    known = [owner.user_id for owner in owners if not owner.new]
    members = set(
        Membership.objects.filter(user_id__in=known).values_list("user_id", flat=True)
        if known
        else ()
    )
    organisations = Organisation.objects.bulk_create(
        Organisation(name=owner.name, personal=True, created_at=owner.created_at)
        for owner in owners
    )
    owning = [
        (owner, organisation)
        for owner, organisation in zip(owners, organisations, strict=True)
        if owner.user_id not in members
    ]
    Membership.objects.bulk_create(
        Membership(
            organisation=organisation,
            user_id=owner.user_id,
            role=Role.OWNER,
            created_at=owner.created_at,
        )
        for owner, organisation in owning
    )
    cached = [owner.user_id for owner, _ in owning if not owner.new]
    if cached:
        with outbox_batch():
            for user in User.objects.filter(pk__in=cached).only("pk", "public_id"):
                membership_changed(user=user)
    return organisations
