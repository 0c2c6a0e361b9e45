"""Organisations in the admin: found by id, name or a member's email, read with their members and
invitations, and never written there (the services audit every change); no token hash shown."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from tests.conftest import STRONG_PASSWORD
from tollgate.accounts.models import User
from tollgate.billing.services import customer_get_or_create
from tollgate.organisations import services as org
from tollgate.organisations.models import Invitation, Membership, Organisation

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:organisations_organisation_changelist")


@pytest.fixture
def operator_client() -> Client:
    operator = User.objects.create_user(
        email="operator@example.org", password=STRONG_PASSWORD, is_staff=True, is_superuser=True
    )
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def team(organisation, owner, join) -> Organisation:
    """The paying owner's organisation with a member and an admin, and an invitation waiting."""
    join(organisation, owner, "bob@example.org")
    join(organisation, owner, "ann@example.org", role="admin")
    org.invitation_create(
        organisation=organisation, email="cy@example.org", role="member", actor=owner
    )
    organisation.refresh_from_db()
    return organisation


def _found(client: Client, **query: str) -> list[str]:
    response = client.get(CHANGELIST, query)
    assert response.status_code == 200
    return [row.public_id for row in response.context["cl"].result_list]


def test_the_list_counts_members_and_filters_personal_organisations(operator_client, team):
    alone = User.objects.create_user(email="solo@example.org", password=STRONG_PASSWORD)
    personal = customer_get_or_create(user=alone).organisation
    assert personal is not None
    response = operator_client.get(CHANGELIST)
    assert response.status_code == 200
    counts = {row.public_id: row.member_count for row in response.context["cl"].result_list}
    assert counts == {team.public_id: 3, personal.public_id: 1}
    assert _found(operator_client, personal__exact="1") == [personal.public_id]
    assert _found(operator_client, personal__exact="0") == [team.public_id]


def test_organisations_are_found_by_id_name_a_members_email_and_the_customer(
    operator_client, team, owner, paying
):
    org.organisation_rename(organisation=team, name="Acme Labs", actor=owner)
    assert _found(operator_client, q=team.public_id) == [team.public_id]
    assert _found(operator_client, q="acme") == [team.public_id]
    # Several members match: the organisation is listed once, with all its members counted.
    response = operator_client.get(CHANGELIST, {"q": "example.org"})
    assert [(row.public_id, row.member_count) for row in response.context["cl"].result_list] == [
        (team.public_id, 3)
    ]
    assert _found(operator_client, q="ann@example") == [team.public_id]
    assert _found(operator_client, q=paying.public_id) == [team.public_id]
    assert _found(operator_client, q="nobody@example.net") == []


def test_the_change_page_shows_members_and_invitations_read_only_without_token_hashes(
    operator_client, team, paying
):
    page = operator_client.get(reverse("admin:organisations_organisation_change", args=[team.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    for shown in ("bob@example.org", "ann@example.org", "cy@example.org", paying.public_id):
        assert shown in text
    invitation = Invitation.objects.get(email="cy@example.org")
    assert invitation.public_id in text
    assert invitation.token_hash not in text
    assert 'name="_save"' not in text
    assert "memberships-0-role" not in text  # no editable inline row
    assert "-DELETE" not in text
    inlines = page.context["inline_admin_formsets"]
    assert [formset.formset.prefix for formset in inlines] == ["memberships", "invitations"]
    for formset in inlines:
        assert not formset.has_add_permission
        assert not formset.has_change_permission
        assert not formset.has_delete_permission


def test_nothing_is_added_changed_or_deleted_in_the_admin(operator_client, team):
    assert operator_client.get(reverse("admin:organisations_organisation_add")).status_code == 403
    assert (
        operator_client.get(
            reverse("admin:organisations_organisation_delete", args=[team.pk])
        ).status_code
        == 403
    )
    refused = operator_client.post(
        reverse("admin:organisations_organisation_change", args=[team.pk]),
        {"name": "Renamed", "personal": "on"},
    )
    assert refused.status_code == 403
    team.refresh_from_db()
    assert team.name == ""
    assert Membership.objects.filter(organisation=team).count() == 3
    model_admin = admin.site._registry[Organisation]
    request = operator_client.get(CHANGELIST).wsgi_request
    for inline in model_admin.get_inline_instances(request, team):
        assert not inline.has_add_permission(request, team)
        assert not inline.has_change_permission(request, team)
        assert not inline.has_delete_permission(request, team)
    # Memberships and invitations have no admin of their own to write through.
    assert Membership not in admin.site._registry
    assert Invitation not in admin.site._registry


def test_staff_without_the_view_permission_see_no_organisations(team):
    staff = User.objects.create_user(
        email="staff@example.org", password=STRONG_PASSWORD, is_staff=True
    )
    client = Client()
    client.force_login(staff)
    assert client.get(CHANGELIST).status_code == 403
