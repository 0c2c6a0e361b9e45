"""What people read instead of the catalog's keys: features and limits carry display names (limits
a unit), loaded from ``[[features]]`` and ``[[metrics]]``, kept in the catalog's order and cached
for every process until the catalog changes."""

from __future__ import annotations

import copy
import importlib

import pytest
from django.apps import apps
from django.core.management import call_command
from django.urls import reverse

from tollgate.accounts.models import User
from tollgate.catalog.models import Feature, Metric, Plan
from tollgate.catalog.selectors import catalog_names
from tollgate.catalog.services import catalog_load
from tollgate.core.errors import ValidationFailed

pytestmark = pytest.mark.django_db

DOC = {
    "products": [
        {
            "code": "app",
            "name": "App",
            "plans": [
                {
                    "code": "team",
                    "name": "Team",
                    "features": {"sso": True, "api_access": True, "webhooks": False},
                    "limits": {"storage_gb": 50, "seats": 10, "api_calls_per_month": -1},
                    "prices": [{"amount": 1000, "currency": "USD", "interval": "month"}],
                }
            ],
        }
    ],
    "features": [
        {"code": "api_access", "name": "API access", "description": "Keys for your scripts."},
        {"code": "sso", "name": "SSO"},
    ],
    "metrics": [
        {"code": "api_calls_per_month", "name": "API calls per month"},
        {"code": "storage_gb", "name": "Storage", "unit": "GB", "reset": "level"},
        {"code": "seats", "name": "Seats", "reset": "level"},
    ],
}


@pytest.fixture
def admin_client(client):
    admin = User.objects.create_user(
        email="admin@example.org",
        password="correct-horse-battery-staple-42",
        is_staff=True,
        is_superuser=True,
    )
    client.force_login(admin)
    return client


def test_features_load_with_their_names_and_loading_again_changes_nothing():
    first = catalog_load(document=DOC)
    assert "feature api_access" in first.created
    api = Feature.objects.get(code="api_access")
    assert (api.name, api.description) == ("API access", "Keys for your scripts.")
    assert Feature.objects.get(code="sso").name == "SSO"
    assert not catalog_load(document=DOC).changed


def test_a_feature_key_no_entry_declares_gets_a_name_made_from_it_and_keeps_a_later_one():
    catalog_load(document=DOC)
    assert Feature.objects.get(code="webhooks").name == "Webhooks"
    renamed = copy.deepcopy(DOC)
    renamed["features"].append({"code": "webhooks", "name": "Outgoing webhooks"})
    catalog_load(document=renamed)
    catalog_load(document=DOC)  # a file that stops declaring it leaves the name as it was
    assert Feature.objects.get(code="webhooks").name == "Outgoing webhooks"


def test_a_renamed_feature_is_updated_in_place():
    catalog_load(document=DOC)
    renamed = copy.deepcopy(DOC)
    renamed["features"][1]["name"] = "Single sign-on (SSO)"
    result = catalog_load(document=renamed)
    assert result.updated == ["feature sso"]
    assert Feature.objects.get(code="sso").name == "Single sign-on (SSO)"


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({"code": "sso"}, "features must be a list"),
        ([{"name": "SSO"}], "features[0]: 'code' is required"),
        ([{"code": "sso", "name": 7}], "features[0]: name must be text"),
        ([{"code": "Single Sign On"}], "features[0]: code must be"),
    ],
)
def test_malformed_feature_entries_are_refused_with_their_place(features, message):
    doc = copy.deepcopy(DOC)
    doc["features"] = features
    with pytest.raises(ValidationFailed) as excinfo:
        catalog_load(document=doc)
    assert message in excinfo.value.message
    assert not Plan.objects.exists()


def test_a_limit_below_minus_one_is_refused_since_minus_one_means_unlimited():
    doc = copy.deepcopy(DOC)
    doc["products"][0]["plans"][0]["limits"]["seats"] = -2
    with pytest.raises(ValidationFailed, match="-1 for no limit"):
        catalog_load(document=doc)


def test_names_keep_the_order_the_catalog_declares_them_in():
    catalog_load(document=DOC)
    names = catalog_names()
    plan = Plan.objects.get(code="team")
    assert [(key.name, key.unit, value) for key, value in names.limits_of(plan)] == [
        ("API calls per month", "", -1),
        ("Storage", "GB", 50),
        ("Seats", "", 10),
    ]
    # Only features the plan has; undeclared keys after the declared ones.
    assert [key.name for key in names.features_of(plan)] == ["API access", "SSO"]
    assert names.name("storage_gb") == "Storage"
    assert names.name("unknown_key") == "Unknown key"


def test_the_names_are_read_from_the_cache_once_warm(django_assert_num_queries):
    catalog_load(document=DOC)
    with django_assert_num_queries(2):  # the features and the metrics
        catalog_names()
    with django_assert_num_queries(0):
        assert catalog_names().name("sso") == "SSO"


def test_a_catalog_load_drops_the_cached_names_once_it_commits(
    django_capture_on_commit_callbacks,
):
    catalog_load(document=DOC)
    assert catalog_names().name("sso") == "SSO"
    renamed = copy.deepcopy(DOC)
    renamed["features"][1]["name"] = "Single sign-on"
    with django_capture_on_commit_callbacks(execute=True):
        catalog_load(document=renamed)
    assert catalog_names().name("sso") == "Single sign-on"


def test_renaming_a_feature_or_a_metric_in_the_admin_drops_the_cached_names(
    admin_client, django_capture_on_commit_callbacks
):
    catalog_load(document=DOC)
    assert catalog_names().name("sso") == "SSO"
    feature = Feature.objects.get(code="sso")
    metric = Metric.objects.get(code="seats")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:catalog_feature_change", args=[feature.pk]),
            {"code": "sso", "name": "Single sign-on", "description": "", "display_order": 1},
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert catalog_names().name("sso") == "Single sign-on"
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:catalog_metric_change", args=[metric.pk]),
            {"code": "seats", "name": "Team members", "unit": "", "reset": "level"}
            | {"display_order": 2},
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert catalog_names().name("seats") == "Team members"


def test_a_key_first_used_in_a_plan_edited_in_the_admin_gets_a_name(
    admin_client, django_capture_on_commit_callbacks
):
    catalog_load(document=DOC)
    catalog_names()  # warm
    plan = Plan.objects.get(code="team")
    price = plan.prices.get()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:catalog_plan_change", args=[plan.pk]),
            {
                "product": plan.product_id,
                "code": plan.code,
                "name": plan.name,
                "description": "",
                "features": '{"sso": true, "audit_export": true}',
                "limits": '{"seats": 10, "projects": 5}',
                "api_rate_limits": "{}",
                "trial_days": 0,
                "trial_end_without_card": "",
                "display_order": 0,
                "active": "on",
                "prices-TOTAL_FORMS": 1,
                "prices-INITIAL_FORMS": 1,
                "prices-MIN_NUM_FORMS": 0,
                "prices-MAX_NUM_FORMS": 1000,
                "prices-0-id": price.pk,
                "prices-0-plan": plan.pk,
                "prices-0-active": "on",
            },
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Feature.objects.get(code="audit_export").name == "Audit export"
    assert Metric.objects.get(code="projects").reset == Metric.Reset.PERIOD
    plan.refresh_from_db()
    assert [key.name for key in catalog_names().features_of(plan)] == ["SSO", "Audit export"]


def test_the_feature_and_metric_lists_open_in_the_admin(admin_client):
    catalog_load(document=DOC)
    for name in ("feature", "metric"):
        assert admin_client.get(reverse(f"admin:catalog_{name}_changelist")).status_code == 200


def test_the_migration_names_the_feature_keys_plans_already_use():
    catalog_load(document=DOC)
    Feature.objects.all().delete()
    migration = importlib.import_module(
        "tollgate.catalog.migrations.0006_features_for_existing_plans"
    )
    migration.features_for_existing_plans(apps, None)
    assert dict(Feature.objects.values_list("code", "name")) == {
        "api_access": "Api access",
        "sso": "Sso",
        "webhooks": "Webhooks",
    }


def test_the_demo_catalog_names_every_key_its_plans_use():
    call_command("catalog_load", "demo")
    names = catalog_names()
    keys = {
        key for plan in Plan.objects.all() for key in (*plan.features.keys(), *plan.limits.keys())
    }
    assert {key: names.name(key) for key in keys} == {
        "sso": "SSO",
        "api_access": "API access",
        "priority_support": "Priority support",
        "audit_export": "Audit log export",
        "api_calls_per_month": "API calls per month",
        "projects": "Projects",
        "seats": "Seats",
    }
