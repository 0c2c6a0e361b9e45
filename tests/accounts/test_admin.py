from __future__ import annotations

import pytest
from allauth.usersessions.models import UserSession
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from tests.conftest import STRONG_PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(make_user) -> Client:
    operator = make_user("operator@example.org", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(operator)
    return client


def _searchable() -> list[type]:
    """Every model whose admin page has a search box (some admins build their fields per request)."""
    return [
        model
        for model, model_admin in admin.site._registry.items()
        if model_admin.get_search_fields(None)  # type: ignore[arg-type]
    ]


def test_the_user_sessions_admin_has_a_search_box():
    assert UserSession in _searchable()


@pytest.mark.parametrize("model", _searchable(), ids=lambda model: model._meta.label)
def test_every_admin_search_box_searches(superuser_client, model):
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    assert superuser_client.get(url, {"q": "jane"}).status_code == 200


def test_user_sessions_are_found_by_the_accounts_email(superuser_client, make_user):
    make_user("jane@example.org")
    make_user("john@example.org")
    for email in ("jane@example.org", "john@example.org"):
        signing_in = Client().post(
            "/accounts/login/", {"login": email, "password": STRONG_PASSWORD}
        )
        assert signing_in.status_code == 302
    jane_session = UserSession.objects.get(user__email="jane@example.org")

    url = reverse("admin:usersessions_usersession_changelist")
    response = superuser_client.get(url, {"q": "jane@example"})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [jane_session]
    by_id = superuser_client.get(url, {"q": jane_session.user.public_id})
    assert list(by_id.context["cl"].result_list) == [jane_session]
