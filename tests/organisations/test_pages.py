"""The organisation pages: what members see (the plan, not the invoices), inviting, the
invitation link, transferring ownership with the password; and staff's customer page."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from tests.conftest import STRONG_PASSWORD, links_in
from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.billing.models import Invoice
from tollgate.organisations.models import Membership, Role

pytestmark = pytest.mark.django_db


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_member_sees_the_plan_but_neither_billing_nor_invoices(organisation, owner, join):
    member = join(organisation, owner, "bob@example.org").user
    invoice = Invoice.objects.get()
    page = _client(member).get("/account/organisation/")
    assert page.status_code == 200
    assert b"<dd>Pro (active)</dd>" in page.content  # the organisation's plan
    assert b"Invite someone" not in page.content
    for path in ("/billing/", f"/billing/invoices/{invoice.public_id}/", "/billing/cancel/"):
        refused = _client(member).get(path)
        assert refused.status_code == 403, path
        assert invoice.number.encode() not in refused.content
    assert _client(owner).get(f"/billing/invoices/{invoice.public_id}/").status_code == 200


def test_inviting_and_accepting_through_the_pages(
    organisation, owner, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _client(owner).post(
            "/account/organisation/invite/", {"email": "ann@example.org", "role": "admin"}
        )
    assert response.status_code == 302
    link = next(link for link in links_in(mail.outbox[-1]) if "/organisation/invitations/" in link)
    path = re.sub(r"^https?://[^/]+", "", link)
    ann = User.objects.create_user(email="ann@example.org", password=STRONG_PASSWORD)
    client = _client(ann)
    shown = client.get(path)
    assert shown.status_code == 200
    assert b"Accept and join" in shown.content
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(path, {"decision": "accept"}).status_code == 302
    assert Membership.objects.get(user=ann).role == Role.ADMIN
    assert client.get("/billing/").status_code == 200  # an admin manages billing
    used = client.get(path)
    assert used.status_code == 404
    assert b"not valid any more" in used.content


def test_transferring_ownership_asks_for_the_password(organisation, owner, join):
    ann = join(organisation, owner, "ann@example.org", role="admin").user
    client = _client(owner)
    wrong = client.post(
        "/account/organisation/transfer/", {"new_owner": ann.public_id, "password": "nope"}
    )
    assert wrong.status_code == 200
    assert b"not your current password" in wrong.content
    assert Membership.objects.get(user=owner).role == Role.OWNER
    done = client.post(
        "/account/organisation/transfer/",
        {"new_owner": ann.public_id, "password": STRONG_PASSWORD},
    )
    assert done.status_code == 302
    assert Membership.objects.get(user=ann).role == Role.OWNER


def test_the_last_owner_is_told_why_they_cannot_leave(organisation, owner, join):
    join(organisation, owner, "bob@example.org")
    client = _client(owner)
    response = client.post("/account/organisation/leave/", follow=True)
    assert b"An organisation needs an owner" in response.content
    assert Membership.objects.filter(user=owner, role=Role.OWNER).exists()


def test_staff_see_the_organisation_on_the_customer_page(
    organisation, owner, paying, join, django_capture_on_commit_callbacks
):
    join(organisation, owner, "bob@example.org")
    staff = User.objects.create_user(
        email="staff@example.org", password=STRONG_PASSWORD, is_staff=True
    )
    page = _client(staff).get(f"/staff/customers/{paying.public_id}/")
    assert page.status_code == 200
    text = page.content.decode()
    assert organisation.public_id in text
    assert "bob@example.org" in text
    assert "organisations.invitation_accepted" in text  # in the audit trail


def test_a_member_is_told_who_manages_api_keys_and_cannot_create_one(organisation, owner, join):
    member = join(organisation, owner, "bob@example.org").user
    client = _client(member)
    page = client.get("/account/api-keys/")
    assert page.status_code == 200
    assert b"owners and admins manage its API keys" in page.content
    assert b"Create the key" not in page.content
    refused = client.post("/account/api-keys/", {"name": "mine", "scopes": ["usage:write"]})
    assert refused.status_code == 403


def test_an_owner_changes_a_members_role_on_the_organisation_page(organisation, owner, join):
    bob = join(organisation, owner, "bob@example.org").user
    client = _client(owner)
    page = client.get("/account/organisation/")
    assert b'aria-label="Make bob@example.org an admin"' in page.content
    assert b"Make owner@example.org" not in page.content  # never the owner's own role
    done = client.post(
        f"/account/organisation/members/{bob.public_id}/role/", {"role": "admin"}, follow=True
    )
    assert done.status_code == 200
    assert b"bob@example.org is an admin now." in done.content
    assert Membership.objects.get(user=bob).role == Role.ADMIN
    assert b'aria-label="Make bob@example.org a member"' in done.content
    event = AuditEvent.objects.get(action="organisations.member_role_changed")
    assert (event.actor_id, event.details) == (
        owner.pk,
        {"member": bob.public_id, "from": "member", "to": "admin"},
    )


@pytest.mark.parametrize("acting_role", ["admin", "member"])
def test_only_an_owner_may_change_roles_through_the_page(organisation, owner, join, acting_role):
    acting = join(organisation, owner, "ann@example.org", role=acting_role).user
    bob = join(organisation, owner, "bob@example.org").user
    client = _client(acting)
    assert b"Make bob@example.org" not in client.get("/account/organisation/").content
    refused = client.post(
        f"/account/organisation/members/{bob.public_id}/role/", {"role": "admin"}, follow=True
    )
    assert refused.status_code == 200
    assert b"Only an owner of the organisation can do this." in refused.content
    assert Membership.objects.get(user=bob).role == Role.MEMBER
    assert not AuditEvent.objects.filter(action="organisations.member_role_changed").exists()


@pytest.mark.parametrize("role", ["owner", "boss", ""])
def test_a_role_that_cannot_be_given_is_refused_with_a_message(organisation, owner, join, role):
    bob = join(organisation, owner, "bob@example.org").user
    refused = _client(owner).post(
        f"/account/organisation/members/{bob.public_id}/role/", {"role": role}, follow=True
    )
    assert refused.status_code == 200
    assert b"Choose admin or member." in refused.content
    assert Membership.objects.get(user=bob).role == Role.MEMBER


def test_the_owners_own_role_and_strangers_are_refused_without_an_error_page(
    organisation, owner, join
):
    client = _client(owner)
    own = client.post(
        f"/account/organisation/members/{owner.public_id}/role/", {"role": "admin"}, follow=True
    )
    assert own.status_code == 200
    assert b"changes only by transferring ownership" in own.content
    assert Membership.objects.get(user=owner).role == Role.OWNER
    stranger = User.objects.create_user(email="eve@example.org", password=STRONG_PASSWORD)
    missing = client.post(
        f"/account/organisation/members/{stranger.public_id}/role/", {"role": "admin"}
    )
    assert missing.status_code == 404
    assert client.get(f"/account/organisation/members/{owner.public_id}/role/").status_code == 405
