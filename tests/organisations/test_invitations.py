"""Invitations by email: the link is signed, expires, works once, and only its hash is stored."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core import mail

from tests.billing.conftest import new_key
from tests.conftest import STRONG_PASSWORD, links_in
from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.core import clock
from tollgate.ops.paths import redacted_path
from tollgate.organisations import services as org
from tollgate.organisations.errors import (
    AlreadyInvited,
    AlreadyMember,
    CannotJoin,
    InvitationForAnotherAddress,
    InvitationInvalid,
    NotAllowedInOrganisation,
)
from tollgate.organisations.invitations import token_hash
from tollgate.organisations.models import Invitation, InvitationStatus, Membership, Role

pytestmark = pytest.mark.django_db


def _invite(organisation, owner, email="ann@example.org", role="member"):
    return org.invitation_create(organisation=organisation, email=email, role=role, actor=owner)


def test_the_invitation_email_has_a_text_and_an_html_part_with_one_working_link(
    organisation, owner, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        sent = _invite(organisation, owner)
    message = mail.outbox[-1]
    assert message.to == ["ann@example.org"]
    html = message.alternatives[0][0]
    links = [link for link in links_in(message) if "/organisation/invitations/" in link]
    assert len(links) == 1
    assert links[0].endswith(f"/organisation/invitations/{sent.token}/")
    assert f'href="{links[0]}"' in html
    # Only the hash is stored; the token is in no audit event and no stored row.
    invitation = Invitation.objects.get()
    secret = sent.token.split(":")[0]
    assert invitation.token_hash == token_hash(secret)
    assert secret not in invitation.token_hash
    assert not any(secret in str(e.details) for e in AuditEvent.objects.all())
    # The path of the link is written to the request log with the token redacted.
    path = re.sub(r"^https?://[^/]+", "", links[0])
    assert secret not in redacted_path(path)


def test_accepting_joins_once_and_the_link_stops_working(organisation, owner):
    sent = _invite(organisation, owner)
    ann = User.objects.create_user(email="Ann@Example.org", password=STRONG_PASSWORD)
    membership = org.invitation_accept(token=sent.token, user=ann)
    assert (membership.organisation_id, membership.role) == (organisation.pk, Role.MEMBER)
    assert Invitation.objects.get().status == InvitationStatus.ACCEPTED
    with pytest.raises(InvitationInvalid):
        org.invitation_accept(token=sent.token, user=ann)
    assert AuditEvent.objects.filter(action="organisations.invitation_accepted").count() == 1


def test_an_expired_or_altered_link_is_refused(organisation, owner):
    sent = _invite(organisation, owner)
    ann = User.objects.create_user(email="ann@example.org", password=STRONG_PASSWORD)
    with pytest.raises(InvitationInvalid):
        org.invitation_accept(token=sent.token[:-1] + "x", user=ann)
    with clock.frozen(clock.now() + dt.timedelta(days=8)), pytest.raises(InvitationInvalid):
        org.invitation_accept(token=sent.token, user=ann)
    assert not Membership.objects.filter(user=ann).exists()


def test_an_invitation_is_for_its_own_address(organisation, owner):
    sent = _invite(organisation, owner)
    bob = User.objects.create_user(email="bob@example.org", password=STRONG_PASSWORD)
    with pytest.raises(InvitationForAnotherAddress):
        org.invitation_accept(token=sent.token, user=bob)


def test_declined_and_withdrawn_invitations_no_longer_work(organisation, owner):
    declined = _invite(organisation, owner)
    org.invitation_decline(token=declined.token)
    withdrawn = _invite(organisation, owner, email="cy@example.org")
    org.invitation_revoke(invitation=withdrawn.invitation, actor=owner)
    ann = User.objects.create_user(email="ann@example.org", password=STRONG_PASSWORD)
    for sent in (declined, withdrawn):
        with pytest.raises(InvitationInvalid):
            org.invitation_accept(token=sent.token, user=ann)
    # Declined, the address can be invited again.
    _invite(organisation, owner)


def test_one_pending_invitation_per_address_and_none_for_members(organisation, owner, join):
    _invite(organisation, owner)
    with pytest.raises(AlreadyInvited):
        _invite(organisation, owner, email="ANN@example.org")
    join(organisation, owner, "bob@example.org")
    with pytest.raises(AlreadyMember):
        _invite(organisation, owner, email="bob@example.org")


def test_members_cannot_invite(organisation, owner, join):
    member = join(organisation, owner, "bob@example.org").user
    with pytest.raises(NotAllowedInOrganisation):
        _invite(organisation, member)


def test_joining_leaves_an_unpaid_personal_organisation_but_not_a_paying_one(
    organisation, owner, price
):
    ann = User.objects.create_user(email="ann@example.org", password=STRONG_PASSWORD)
    own = services.customer_get_or_create(user=ann)  # her personal organisation, no plan
    org.invitation_accept(token=_invite(organisation, owner).token, user=ann)
    assert Membership.objects.get(user=ann).organisation_id == organisation.pk
    assert not Membership.objects.filter(organisation=own.organisation).exists()

    bob = User.objects.create_user(email="bob@example.org", password=STRONG_PASSWORD)
    paying = services.customer_get_or_create(user=bob)
    services.subscription_start(
        customer=paying, price=price("starter"), idempotency_key=new_key()
    )  # a trial: not ended
    sent = _invite(organisation, owner, email="bob@example.org")
    with pytest.raises(CannotJoin):
        org.invitation_accept(token=sent.token, user=bob)
    assert Membership.objects.get(user=bob).organisation_id == paying.organisation_id
