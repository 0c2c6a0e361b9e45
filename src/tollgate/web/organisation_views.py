"""The organisation pages: members, invitations, leaving and ownership (under the account pages),
and the invitation link's page. Views read through ``organisations.selectors`` and write through
``organisations.services``; a refusal is shown as a message in its own words."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from tollgate.accounts.models import User
from tollgate.billing.entitlements import entitlements_for
from tollgate.billing.seats import seats_of
from tollgate.billing.services import customer_get_or_create
from tollgate.core.errors import TollgateError
from tollgate.organisations import selectors, services
from tollgate.organisations.invitations import invitation_open, invitation_pending_for
from tollgate.organisations.models import Invitation, InvitationStatus, Membership, Organisation
from tollgate.web.organisation_forms import (
    ROLE_CHOICE,
    InviteForm,
    RenameForm,
    RoleForm,
    TransferForm,
)

PAGE = "web:organisation"


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # every view here requires a signed-in account  # noqa: S101
    return user


def _organisation(user: User) -> Organisation:
    """The account's organisation; an account without one gets its personal organisation (its
    billing customer) first, as its first billing step would."""
    membership = selectors.membership_of(user=user)
    if membership is not None:
        return membership.organisation
    customer_get_or_create(user=user)
    membership = selectors.membership_of(user=user)
    if membership is None:  # pragma: no cover - customer_get_or_create makes one
        raise Http404("No organisation.")
    return membership.organisation


def _done(request: HttpRequest, action: Callable[[], object], success: str) -> HttpResponse:
    try:
        action()
    except TollgateError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, success)
    return redirect(PAGE)


@require_http_methods(["GET", "HEAD"])
@never_cache
@login_required
def organisation(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    membership = selectors.membership_of(user=user)
    manages = selectors.manages_billing(membership) or membership is None
    context: dict[str, object] = {
        "membership": membership,
        "manages": manages,
        "entitlements": entitlements_for(user=user),
        "invite_form": InviteForm() if manages else None,
    }
    if membership is not None:
        org = membership.organisation
        members = selectors.members_of(organisation=org)
        invitations = selectors.invitations_pending(organisation=org) if manages else []
        context.update(
            organisation=org,
            members=members,
            invitations=invitations,
            seats=seats_of(org),
            seats_taken=len(members) + sum(map(invitation_open, invitations)),
            rename_form=RenameForm(initial={"name": org.name}) if manages else None,
            is_owner=membership.role == "owner",
        )
    return render(request, "web/organisation.html", context)


@require_POST
@login_required
def organisation_rename(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = RenameForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Use at most 150 characters.")
        return redirect(PAGE)
    return _done(
        request,
        lambda: services.organisation_rename(
            organisation=_organisation(user), name=form.cleaned_data["name"], actor=user
        ),
        "The organisation's name is saved.",
    )


@require_POST
@login_required
def organisation_invite(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = InviteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter a valid email address and choose a role.")
        return redirect(PAGE)
    email = form.cleaned_data["email"]
    return _done(
        request,
        lambda: services.invitation_create(
            organisation=_organisation(user),
            email=email,
            role=form.cleaned_data["role"],
            actor=user,
        ),
        f"Invitation sent to {email}.",
    )


@require_POST
@login_required
def invitation_revoke(request: HttpRequest, invitation_id: str) -> HttpResponse:
    user = _user(request)
    membership = selectors.membership_of(user=user)
    invitation = (
        Invitation.objects.filter(
            public_id=invitation_id, organisation_id=membership.organisation_id
        ).first()
        if membership is not None
        else None
    )
    if invitation is None:
        raise Http404("No such invitation.")
    return _done(
        request,
        lambda: services.invitation_revoke(invitation=invitation, actor=user),
        "The invitation is withdrawn; its link no longer works.",
    )


def _member(membership: Membership | None, user_id: str) -> User:
    if membership is None:
        raise Http404("No such member.")
    found = (
        Membership.objects.select_related("user")
        .filter(user__public_id=user_id, organisation_id=membership.organisation_id)
        .first()
    )
    if found is None:
        raise Http404("No such member.")
    return found.user


@require_POST
@login_required
def member_remove(request: HttpRequest, user_id: str) -> HttpResponse:
    user = _user(request)
    membership = selectors.membership_of(user=user)
    member = _member(membership, user_id)
    assert membership is not None  # _member found one  # noqa: S101
    return _done(
        request,
        lambda: services.member_remove(
            organisation=membership.organisation, member=member, actor=user
        ),
        f"{member.name or member.email} no longer belongs to the organisation.",
    )


@require_POST
@login_required
def member_role_change(request: HttpRequest, user_id: str) -> HttpResponse:
    """An owner makes a member an admin, or an admin a plain member."""
    user = _user(request)
    membership = selectors.membership_of(user=user)
    member = _member(membership, user_id)
    assert membership is not None  # _member found one  # noqa: S101
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, ROLE_CHOICE)
        return redirect(PAGE)
    role = form.cleaned_data["role"]
    return _done(
        request,
        lambda: services.member_role_change(
            organisation=membership.organisation, member=member, role=role, actor=user
        ),
        f"{member.name or member.email} is {'an admin' if role == 'admin' else 'a member'} now.",
    )


@require_POST
@login_required
def organisation_leave(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    membership = selectors.membership_of(user=user)
    if membership is None:
        raise Http404("No organisation.")
    try:
        services.member_leave(organisation=membership.organisation, user=user)
    except TollgateError as exc:
        messages.error(request, exc.message)
        return redirect(PAGE)
    messages.success(request, "You left the organisation.")
    return redirect("web:account")


@require_http_methods(["GET", "HEAD", "POST"])
@never_cache
@login_required
def organisation_transfer(request: HttpRequest) -> HttpResponse:
    """Transfer ownership to another member, with the current password."""
    user = _user(request)
    membership = selectors.membership_of(user=user)
    if membership is None or membership.role != "owner":
        raise Http404("Only an owner transfers ownership.")
    members = selectors.members_of(organisation=membership.organisation)
    form = TransferForm(request.POST or None, user=user, members=members)
    if request.method == "POST" and form.is_valid():
        new_owner = _member(membership, form.cleaned_data["new_owner"])
        try:
            services.ownership_transfer(
                organisation=membership.organisation,
                actor=user,
                new_owner=new_owner,
                password=form.cleaned_data["password"],
            )
        except TollgateError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"{new_owner.name or new_owner.email} is the owner now.")
            return redirect(PAGE)
    return render(request, "web/organisation_transfer.html", {"form": form})


@require_http_methods(["GET", "HEAD", "POST"])
@never_cache
@login_required
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """The invitation link: who invites to what, and accept or decline."""
    user = _user(request)
    try:
        found = invitation_pending_for(token)
    except TollgateError as exc:
        return render(
            request, "web/organisation_invitation.html", {"error": exc.message}, status=404
        )
    if request.method == "POST":
        try:
            if request.POST.get("decision") == "decline":
                services.invitation_decline(token=token, user=user)
                messages.success(request, "You declined the invitation.")
                return redirect("web:account")
            services.invitation_accept(token=token, user=user)
        except TollgateError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "Welcome: you joined the organisation.")
            return redirect(PAGE)
    return render(
        request,
        "web/organisation_invitation.html",
        {"invitation": found, "pending": found.status == InvitationStatus.PENDING},
    )
