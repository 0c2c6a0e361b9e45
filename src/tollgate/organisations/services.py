"""Organisation writes: invitations (create, accept, decline, revoke), changing a member's role,
removing a member, leaving, transferring ownership, naming the organisation.

Each is one durable transaction that locks the organisation's row first (``organisations.locks``),
records an audit event in it, and queues its email through the outbox. Locking the organisation
serializes every change of who belongs to it, so the rule that an organisation always keeps an
owner holds under concurrent requests (two owners leaving at once: one of them is refused).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import transaction

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.core import clock
from tollgate.core.errors import ValidationFailed
from tollgate.notifications.services import absolute_url, email_send_template
from tollgate.organisations import registry
from tollgate.organisations.cache import membership_changed
from tollgate.organisations.errors import (
    AlreadyInvited,
    AlreadyMember,
    CannotJoin,
    InvitationForAnotherAddress,
    InvitationInvalid,
    LastOwner,
    MemberNotFound,
    NotAllowedInOrganisation,
    OwnerRequired,
    OwnerRoleFixed,
    PasswordIncorrect,
)
from tollgate.organisations.invitations import (
    LIFETIME,
    invitation_open,
    invitation_pending_for,
    token_new,
)
from tollgate.organisations.locks import lock_account, lock_organisation, lock_organisations
from tollgate.organisations.models import (
    BILLING_ROLES,
    Invitation,
    InvitationStatus,
    Membership,
    Organisation,
    Role,
)
from tollgate.organisations.selectors import member_count

INVITABLE_ROLES = (Role.ADMIN, Role.MEMBER)
# Roles an owner gives and takes; ownership moves only by transfer (``ownership_transfer``).
ASSIGNABLE_ROLES = INVITABLE_ROLES
NAME_MAX_LENGTH = 150


@dataclass(frozen=True, slots=True)
class InvitationSent:
    invitation: Invitation
    # The signed token of the emailed link; kept nowhere (only its hash is stored).
    token: str


def _membership_in(organisation: Organisation, user: User) -> Membership | None:
    return Membership.objects.filter(organisation=organisation, user=user).first()


def _manager_in(organisation: Organisation, user: User) -> Membership:
    membership = _membership_in(organisation, user)
    if membership is None or membership.role not in BILLING_ROLES:
        raise NotAllowedInOrganisation()
    return membership


def _owners(organisation: Organisation) -> int:
    return Membership.objects.filter(organisation=organisation, role=Role.OWNER).count()


def _people(organisation: Organisation, *, now: dt.datetime) -> int:
    """Its members and the people its open invitations are waiting for."""
    waiting = Invitation.objects.filter(
        organisation=organisation, status=InvitationStatus.PENDING, expires_at__gt=now
    ).count()
    return member_count(organisation=organisation) + waiting


def _email_checked(email: str) -> str:
    email = (email or "").strip()
    try:
        validate_email(email)
    except DjangoValidationError as exc:
        raise ValidationFailed("Enter a valid email address.", details={"field": "email"}) from exc
    local, _, domain = email.rpartition("@")
    return f"{local}@{domain.lower()}"


def organisation_rename(*, organisation: Organisation, name: str, actor: User) -> Organisation:
    """Name the organisation (owners and admins)."""
    name = (name or "").strip()
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationFailed(
            f"Use at most {NAME_MAX_LENGTH} characters.", details={"field": "name"}
        )
    with transaction.atomic(durable=True):
        locked = lock_organisation(organisation)
        _manager_in(locked, actor)
        if locked.name == name:
            return locked
        locked.name = name
        locked.save(update_fields=["name"])
        audit_record(action="organisations.renamed", actor=actor, target=locked)
    return locked


def invitation_create(
    *, organisation: Organisation, email: str, role: str, actor: User
) -> InvitationSent:
    """Invite ``email`` as an admin or a member (owners and admins invite). The email's link works
    once, for :data:`~tollgate.organisations.invitations.LIFETIME`. One pending invitation per
    address; an address that is a member already is refused."""
    email = _email_checked(email)
    if role not in INVITABLE_ROLES:
        raise ValidationFailed("Invite as an admin or a member.", details={"field": "role"})
    with transaction.atomic(durable=True):
        locked = lock_organisation(organisation)
        _manager_in(locked, actor)
        if Membership.objects.filter(organisation=locked, user__email__iexact=email).exists():
            raise AlreadyMember()
        pending = Invitation.objects.filter(
            organisation=locked, email__iexact=email, status=InvitationStatus.PENDING
        ).first()
        if pending is not None and invitation_open(pending):
            raise AlreadyInvited()
        now = clock.now()
        if pending is not None:  # expired: closed so that a new one can be sent
            _close(pending, status=InvitationStatus.REVOKED, by=None, now=now)
        registry.join_checks_run(locked, _people(locked, now=now) + 1)
        token, hashed = token_new()
        invitation = Invitation.objects.create(
            organisation=locked,
            email=email,
            role=role,
            token_hash=hashed,
            invited_by=actor,
            expires_at=now + LIFETIME,
        )
        if locked.personal:
            locked.personal = False
            locked.save(update_fields=["personal"])
        audit_record(
            action="organisations.invitation_created",
            actor=actor,
            target=locked,
            details={"invitation": invitation.public_id, "role": role},
        )
        email_send_template(
            to=email,
            template="organisation_invitation",
            context={
                "organisation_name": locked.name or actor.name or actor.email,
                "inviter": actor.name or actor.email,
                "role": Role(role).label.lower(),
                "accept_url": absolute_url("web:organisation_invitation", token),
                "expires_at": invitation.expires_at,
            },
            dedupe_key=f"organisations.invitation:{invitation.public_id}",
            suppressible=False,
        )
    return InvitationSent(invitation=invitation, token=token)


def _close(invitation: Invitation, *, status: str, by: User | None, now: dt.datetime) -> None:
    invitation.status = status
    invitation.responded_at = now
    invitation.responded_by = by
    invitation.save(update_fields=["status", "responded_at", "responded_by"])


def invitation_accept(*, token: str, user: User) -> Membership:
    """Join the organisation of the invitation ``token`` (signed, unexpired, unused, sent to the
    account's own address). An account that is the only member of its own organisation leaves it
    for the new one, unless that organisation still pays for a plan; an account that shares
    another organisation must leave it first (CannotJoin)."""
    found = invitation_pending_for(token)
    if found.email.lower() != user.email.lower():
        raise InvitationForAnotherAddress()
    current = Membership.objects.filter(user=user).values_list("organisation_id", flat=True)
    with transaction.atomic(durable=True):
        organisations = lock_organisations(found.organisation_id, *current)
        account = lock_account(user)
        invitation = Invitation.objects.select_for_update().get(pk=found.pk)
        if not invitation_open(invitation):
            raise InvitationInvalid()
        organisation = organisations[invitation.organisation_id]
        previous = Membership.objects.filter(user=account).first()
        if previous is not None:
            _leave_for(previous, organisation, organisations)
        registry.join_checks_run(organisation, member_count(organisation=organisation) + 1)
        membership = Membership.objects.create(
            organisation=organisation, user=account, role=invitation.role
        )
        _close(invitation, status=InvitationStatus.ACCEPTED, by=account, now=clock.now())
        membership_changed(user=account)
        audit_record(
            action="organisations.invitation_accepted",
            actor=account,
            target=organisation,
            details={"invitation": invitation.public_id, "role": invitation.role},
        )
    return membership


def _leave_for(
    previous: Membership, joining: Organisation, locked: dict[int, Organisation]
) -> None:
    if previous.organisation_id == joining.pk:
        raise AlreadyMember()
    old = locked.get(previous.organisation_id)
    # The membership moved since it was read (a concurrent change): nothing was locked for it.
    if old is None or member_count(organisation=old) != 1:
        raise CannotJoin()
    registry.departure_checks_run(old)
    previous.delete()
    audit_record(
        action="organisations.member_left",
        actor=previous.user,
        target=old,
        details={"member": previous.user.public_id, "joined": joining.public_id},
    )


def invitation_decline(*, token: str, user: User | None = None) -> Invitation:
    """Decline the invitation ``token``: its link stops working."""
    found = invitation_pending_for(token)
    with transaction.atomic(durable=True):
        lock_organisation(found.organisation)
        invitation = Invitation.objects.select_for_update().get(pk=found.pk)
        if not invitation_open(invitation):
            raise InvitationInvalid()
        _close(invitation, status=InvitationStatus.DECLINED, by=user, now=clock.now())
        audit_record(
            action="organisations.invitation_declined",
            actor=user,
            target=invitation.organisation,
            details={"invitation": invitation.public_id},
        )
    return invitation


def invitation_revoke(*, invitation: Invitation, actor: User) -> Invitation:
    """Withdraw a pending invitation (owners and admins): its link stops working."""
    with transaction.atomic(durable=True):
        organisation = lock_organisation(invitation.organisation)
        _manager_in(organisation, actor)
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if locked.status != InvitationStatus.PENDING:
            return locked
        _close(locked, status=InvitationStatus.REVOKED, by=actor, now=clock.now())
        audit_record(
            action="organisations.invitation_revoked",
            actor=actor,
            target=organisation,
            details={"invitation": locked.public_id},
        )
    return locked


def member_remove(*, organisation: Organisation, member: User, actor: User) -> None:
    """Remove ``member`` (owners and admins; only an owner removes an owner or an admin). One's
    own membership ends by leaving, not here."""
    with transaction.atomic(durable=True):
        locked = lock_organisation(organisation)
        acting = _manager_in(locked, actor)
        membership = _membership_in(locked, member)
        if membership is None or member.pk == actor.pk:
            raise MemberNotFound()
        if membership.role in BILLING_ROLES and acting.role != Role.OWNER:
            raise OwnerRequired()
        _membership_end_locked(
            locked, membership, action="organisations.member_removed", actor=actor
        )


def member_role_change(
    *, organisation: Organisation, member: User, role: str, actor: User
) -> Membership:
    """Make ``member`` an admin or a plain member (owners only: OwnerRequired). An owner's role,
    and one's own, change only by transferring ownership. Giving the role the member has already
    changes nothing and records nothing."""
    if role not in ASSIGNABLE_ROLES:
        raise ValidationFailed("Choose admin or member.", details={"field": "role"})
    with transaction.atomic(durable=True):
        locked = lock_organisation(organisation)
        acting = _membership_in(locked, actor)
        if acting is None or acting.role != Role.OWNER:
            raise OwnerRequired()
        membership = _membership_in(locked, member)
        if membership is None:
            raise MemberNotFound()
        if membership.role == Role.OWNER:  # another owner's, or the acting owner's own
            raise OwnerRoleFixed()
        previous = membership.role
        if previous == role:
            return membership
        membership.role = role
        membership.save(update_fields=["role"])
        membership_changed(user=member)
        audit_record(
            action="organisations.member_role_changed",
            actor=actor,
            target=locked,
            details={"member": member.public_id, "from": previous, "to": role},
        )
    return membership


def member_leave(*, organisation: Organisation, user: User) -> None:
    """Leave the organisation. Its last owner cannot (LastOwner): ownership is transferred first.
    Two owners leaving at once are serialized on the organisation's row, so one of them stays."""
    with transaction.atomic(durable=True):
        locked = lock_organisation(organisation)
        membership = _membership_in(locked, user)
        if membership is None:
            raise MemberNotFound()
        if membership.role == Role.OWNER and _owners(locked) <= 1:
            raise LastOwner()
        _membership_end_locked(locked, membership, action="organisations.member_left", actor=user)


def _membership_end_locked(
    organisation: Organisation, membership: Membership, *, action: str, actor: User
) -> None:
    member = membership.user
    membership.delete()
    registry.member_departed_locked(organisation, member)
    membership_changed(user=member)
    audit_record(
        action=action,
        actor=actor,
        target=organisation,
        details={"member": member.public_id, "role": membership.role},
    )


def ownership_transfer(
    *, organisation: Organisation, actor: User, new_owner: User, password: str
) -> Membership:
    """Make ``new_owner`` (a member) the owner; the acting owner becomes an admin. The acting
    owner confirms with their password (PasswordIncorrect otherwise)."""
    if not actor.check_password(password):
        raise PasswordIncorrect(details={"field": "password"})
    with transaction.atomic(durable=True):
        locked = lock_organisation(organisation)
        acting = _membership_in(locked, actor)
        if acting is None or acting.role != Role.OWNER:
            raise OwnerRequired()
        target = _membership_in(locked, new_owner)
        if target is None or new_owner.pk == actor.pk:
            raise MemberNotFound()
        target.role, acting.role = Role.OWNER, Role.ADMIN
        target.save(update_fields=["role"])
        acting.save(update_fields=["role"])
        membership_changed(user=actor)
        membership_changed(user=new_owner)
        audit_record(
            action="organisations.ownership_transferred",
            actor=actor,
            target=locked,
            details={"from": actor.public_id, "to": new_owner.public_id},
        )
    return target
