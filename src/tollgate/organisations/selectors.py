"""Organisation reads: an account's membership, the members, the invitations waiting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db.models import Case, IntegerField, Value, When

from tollgate.organisations.cache import CACHE_SECONDS, account_cache_key
from tollgate.organisations.models import (
    BILLING_ROLES,
    Invitation,
    InvitationStatus,
    Membership,
    Organisation,
    Role,
)

_ROLE_ORDER = Case(
    When(role=Role.OWNER, then=Value(0)),
    When(role=Role.ADMIN, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


def membership_of(*, user: Any) -> Membership | None:
    """The account's membership with its organisation (one query), or None."""
    if not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.select_related("organisation").filter(user_id=user.pk).first()


def manages_billing(membership: Membership | None) -> bool:
    return membership is not None and membership.role in BILLING_ROLES


def role_of(*, user: Any) -> str:
    """The account's role in its organisation, "" without one; cached until its membership
    changes, so the billing pages ask it without a query once warm."""
    if not getattr(user, "is_authenticated", False):
        return ""
    key = account_cache_key(user.public_id, "role")
    cached = cache.get(key)
    if isinstance(cached, str):
        return cached
    role = Membership.objects.filter(user_id=user.pk).values_list("role", flat=True).first() or ""
    cache.set(key, role, CACHE_SECONDS)
    return role


def members_of(*, organisation: Organisation) -> list[Membership]:
    """Owners first, then admins, then members; by email within each (one query)."""
    return list(
        Membership.objects.filter(organisation=organisation)
        .select_related("user")
        .annotate(role_order=_ROLE_ORDER)
        .order_by("role_order", "user__email", "pk")
    )


def invitations_pending(*, organisation: Organisation) -> list[Invitation]:
    return list(
        Invitation.objects.filter(organisation=organisation, status=InvitationStatus.PENDING)
        .select_related("invited_by")
        .order_by("created_at", "pk")
    )


def member_count(*, organisation: Organisation) -> int:
    return Membership.objects.filter(organisation=organisation).count()


@dataclass(frozen=True, slots=True)
class OrganisationOverview:
    """What staff see of a customer's organisation: members and invitations waiting."""

    organisation: Organisation
    members: list[Membership]
    invitations: list[Invitation]


def organisation_overview(*, organisation_id: int | None) -> OrganisationOverview | None:
    """The organisation with its members and pending invitations (three queries), or None."""
    if organisation_id is None:
        return None
    organisation = Organisation.objects.filter(pk=organisation_id).first()
    if organisation is None:
        return None
    return OrganisationOverview(
        organisation=organisation,
        members=members_of(organisation=organisation),
        invitations=invitations_pending(organisation=organisation),
    )
