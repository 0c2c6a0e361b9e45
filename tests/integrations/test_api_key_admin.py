"""API keys in the admin: listed, filtered and read, never edited or deleted; added through the
issuing service with the secret shown once; revoked with an action."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.integrations.keys import ApiKeyInvalid, api_key_authenticate, api_key_create
from tollgate.integrations.models import ApiKey

pytestmark = pytest.mark.django_db

LIST = reverse("admin:integrations_apikey_changelist")
ADD = reverse("admin:integrations_apikey_add")
_SECRET = re.compile(r"tg_test_[A-Za-z0-9]{52}")


@pytest.fixture
def admin_client(db: Any) -> Client:
    staff = User.objects.create_user(
        email="ops@example.org",
        password="correct-horse-battery-staple-42",
        is_staff=True,
        is_superuser=True,
    )
    client = Client()
    client.force_login(staff)
    return client


def test_the_list_filters_and_searches_without_showing_any_hash(admin_client):
    kept = api_key_create(name="kept", scopes=["billing:read"])
    gone = api_key_create(name="gone", scopes=["billing:read"])
    admin_client.post(
        LIST, {"action": "revoke_selected", "_selected_action": [gone.key.pk], "index": 0}
    )

    page = admin_client.get(LIST).content.decode()
    assert kept.key.public_id in page
    assert kept.key.display_prefix in page
    assert kept.key.secret_hash not in page
    for query, shown, hidden in [
        ("?revoked=yes", "gone", "kept"),
        ("?revoked=no", "kept", "gone"),
        ("?kind__exact=operator&mode__exact=test", "kept", None),
        (f"?q={kept.key.lookup}", "kept", "gone"),
        (f"?q={gone.key.public_id}", "gone", "kept"),
        ("?q=kept", "kept", "gone"),
    ]:
        response = admin_client.get(LIST + query)
        assert response.status_code == 200, query
        names = re.findall(r'class="field-name"><a [^>]*>([^<]+)</a>', response.content.decode())
        assert shown in names, query
        if hidden:
            assert hidden not in names, query


def test_a_key_is_read_only_and_cannot_be_deleted(admin_client):
    issued = api_key_create(name="readonly", scopes=["billing:read"])
    change = reverse("admin:integrations_apikey_change", args=[issued.key.pk])
    response = admin_client.get(change)
    assert response.status_code == 200
    page = response.content.decode()
    assert issued.key.display_prefix in page
    assert issued.key.secret_hash not in page
    assert 'name="name"' not in page  # nothing to edit
    admin_client.post(change, {"name": "renamed"})
    assert ApiKey.objects.get().name == "readonly"

    delete = reverse("admin:integrations_apikey_delete", args=[issued.key.pk])
    assert admin_client.get(delete).status_code == 403
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert b"delete_selected" not in admin_client.get(LIST).content
    assert ApiKey.objects.count() == 1


def test_adding_a_key_shows_its_secret_once_and_it_works(admin_client):
    form = admin_client.get(ADD)
    assert form.status_code == 200
    assert b'value="webhooks:manage"' in form.content

    response = admin_client.post(
        ADD,
        {
            "name": "provisioned",
            "scopes": ["customers:write", "billing:read"],
            "rate_limits": '{"check": "6000/minute"}',
        },
    )
    assert response.status_code == 200
    page = response.content.decode()
    secrets_shown = set(_SECRET.findall(page))
    assert len(secrets_shown) == 1
    secret = secrets_shown.pop()
    assert "Copy the key now: it will not be shown again." in page

    key = ApiKey.objects.get()
    assert (key.name, key.kind, key.scopes, key.rate_limits) == (
        "provisioned",
        "operator",
        ["billing:read", "customers:write"],
        {"check": "6000/minute"},
    )
    assert api_key_authenticate(presented=secret).key_id == key.public_id
    # Not passed on through the messages (possibly a cookie) or the session, nor audited.
    assert secret not in str(response.cookies)
    assert secret not in str(dict(admin_client.session))
    assert _SECRET.findall(admin_client.get(LIST).content.decode()) == []
    assert AuditEvent.objects.filter(action="api_key.created", target_id=key.public_id).exists()
    for event in AuditEvent.objects.all():
        assert secret not in str(event.details)


def test_a_refused_add_form_says_why_and_issues_nothing(admin_client):
    response = admin_client.post(
        ADD, {"name": "bad", "scopes": ["billing:read"], "rate_limits": '{"check": "often"}'}
    )
    assert response.status_code == 422
    assert b"Write each rate as a number per period" in response.content
    response = admin_client.post(ADD, {"name": "bad", "scopes": ["everything"]})
    assert response.status_code == 422
    assert not ApiKey.objects.exists()


def test_the_revoke_action_stops_the_selected_keys(
    admin_client, django_capture_on_commit_callbacks
):
    first = api_key_create(name="first", scopes=["billing:read"])
    second = api_key_create(name="second", scopes=["billing:read"])
    spared = api_key_create(name="spared", scopes=["billing:read"])
    for issued in (first, second, spared):
        api_key_authenticate(presented=issued.secret)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            LIST,
            {
                "action": "revoke_selected",
                "_selected_action": [first.key.pk, second.key.pk],
                "index": 0,
            },
            follow=True,
        )
    assert response.status_code == 200
    assert b"Revoked 2 key(s)" in response.content
    for issued in (first, second):
        with pytest.raises(ApiKeyInvalid):
            api_key_authenticate(presented=issued.secret)
    assert api_key_authenticate(presented=spared.secret).key_id == spared.key.public_id
    assert AuditEvent.objects.filter(action="api_key.revoked").count() == 2


def test_staff_without_the_permissions_cannot_add_or_revoke(db, django_user_model):
    clerk = django_user_model.objects.create_user(
        email="clerk@example.org", password="correct-horse-battery-staple-42", is_staff=True
    )
    issued = api_key_create(name="kept", scopes=["billing:read"])
    client = Client()
    client.force_login(clerk)
    assert client.get(ADD).status_code == 403
    assert client.post(ADD, {"name": "x", "scopes": ["billing:read"]}).status_code == 403
    client.post(LIST, {"action": "revoke_selected", "_selected_action": [issued.key.pk]})
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 1
    assert ApiKey.objects.count() == 1
