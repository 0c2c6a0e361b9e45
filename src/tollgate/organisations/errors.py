"""Every error the organisations app raises (house errors: a stable code and HTTP status)."""

from __future__ import annotations

from tollgate.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed


class BillingManagedByOthers(PermissionDenied):
    code = "billing_managed_by_organisation"
    default_message = (
        "Your organisation's owners and admins manage its billing; ask one of them for changes."
    )


class NotAllowedInOrganisation(PermissionDenied):
    code = "organisation_role_insufficient"
    default_message = "Only the organisation's owners and admins can do this."


class OwnerRequired(PermissionDenied):
    code = "organisation_owner_required"
    default_message = "Only an owner of the organisation can do this."


class OwnerRoleFixed(Conflict):
    code = "organisation_owner_role_fixed"
    default_message = (
        "An owner's role changes only by transferring ownership: the owner transfers it, and "
        "becomes an admin."
    )


class LastOwner(Conflict):
    code = "organisation_last_owner"
    default_message = (
        "An organisation needs an owner: transfer ownership to someone else before you leave."
    )


class MemberNotFound(NotFound):
    code = "organisation_member_not_found"
    default_message = "This person is not a member of your organisation."


class InvitationInvalid(NotFound):
    code = "invitation_invalid"
    default_message = (
        "This invitation link is not valid any more: it has expired, was used already or was "
        "withdrawn. Ask for a new invitation."
    )


class InvitationForAnotherAddress(PermissionDenied):
    code = "invitation_other_address"
    default_message = (
        "This invitation was sent to another email address. Sign in with the account of that "
        "address to accept it."
    )


class AlreadyInvited(Conflict):
    code = "invitation_pending"
    default_message = "This address has an invitation waiting already."


class AlreadyMember(Conflict):
    code = "organisation_already_member"
    default_message = "This person is a member of the organisation already."


class CannotJoin(Conflict):
    code = "organisation_cannot_join"
    default_message = (
        "You share another organisation or pay for a plan: leave it, or cancel the plan, before "
        "you join this one."
    )


class PasswordIncorrect(ValidationFailed):
    code = "password_incorrect"
    default_message = "That is not your current password."
