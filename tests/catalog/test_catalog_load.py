from __future__ import annotations

import copy

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command

from tollgate.audit.models import AuditEvent
from tollgate.catalog.models import Plan, Price, Product
from tollgate.catalog.selectors import CATALOG_VERSION_KEY, PLANS_CACHE_KEY, plans_for_sale
from tollgate.catalog.services import catalog_changed_announce, catalog_load
from tollgate.core.errors import ValidationFailed

pytestmark = pytest.mark.django_db

DOC = {
    "products": [
        {
            "code": "app",
            "name": "App",
            "plans": [
                {
                    "code": "basic",
                    "name": "Basic",
                    "trial_days": 7,
                    "features": {"api": False},
                    "limits": {"seats": 1},
                    "prices": [
                        {"amount": 1000, "currency": "usd", "interval": "month"},
                        {"amount": 10000, "currency": "USD", "interval": "year"},
                    ],
                }
            ],
        }
    ]
}


def test_loading_creates_the_catalog_and_loading_again_changes_nothing():
    first = catalog_load(document=DOC)
    assert first.changed
    assert Product.objects.count() == 1
    assert Plan.objects.get(code="basic").trial_days == 7
    assert set(Price.objects.values_list("amount", "currency", "interval")) == {
        (1000, "USD", "month"),
        (10000, "USD", "year"),
    }
    second = catalog_load(document=DOC)
    assert not second.changed
    assert Price.objects.count() == 2
    assert AuditEvent.objects.filter(action="catalog.loaded").count() == 1


def test_a_new_amount_retires_the_old_price_instead_of_editing_it():
    catalog_load(document=DOC)
    old = Price.objects.get(interval="month")
    changed = copy.deepcopy(DOC)
    changed["products"][0]["plans"][0]["prices"][0]["amount"] = 1200
    changed["products"][0]["plans"][0]["name"] = "Basic+"
    result = catalog_load(document=changed)
    old.refresh_from_db()
    assert old.amount == 1000
    assert not old.active
    assert Price.objects.get(interval="month", active=True).amount == 1200
    assert result.retired == [f"price {old.public_id}"]
    assert result.updated == ["plan basic"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["products"][0]["plans"][0]["prices"][0].update(amount=9.99), "amount"),
        (lambda d: d["products"][0]["plans"][0]["prices"][0].update(amount=-1), "amount"),
        (
            lambda d: d["products"][0]["plans"][0]["prices"][0].update(currency="dollars"),
            "currency",
        ),
        (lambda d: d["products"][0]["plans"][0]["prices"][0].update(interval="week"), "interval"),
        (
            lambda d: d["products"][0]["plans"][0]["prices"][0].update(interval_count=0),
            "interval_count",
        ),
        (lambda d: d["products"][0]["plans"][0]["prices"][0].pop("amount"), "amount"),
        (lambda d: d["products"][0].pop("code"), "code"),
    ],
)
def test_invalid_catalogs_are_refused_whole(mutate, field):
    doc = copy.deepcopy(DOC)
    mutate(doc)
    with pytest.raises(ValidationFailed) as excinfo:
        catalog_load(document=doc)
    assert field in excinfo.value.message
    assert not Product.objects.exists()


def test_invalid_features_or_limits_are_refused():
    for key, value in (("features", {"api": "yes"}), ("limits", {"seats": 1.5})):
        doc = copy.deepcopy(DOC)
        doc["products"][0]["plans"][0][key] = value
        with pytest.raises(ValidationFailed):
            catalog_load(document=doc)
    with pytest.raises(ValidationFailed):
        catalog_load(document={})


def test_demo_catalog_loads_from_the_command(capsys):
    call_command("catalog_load", "demo")
    assert "created plan starter" in capsys.readouterr().out
    call_command("catalog_load", "demo")
    assert "already up to date" in capsys.readouterr().out
    plans = list(plans_for_sale())
    assert [p.code for p in plans] == ["starter", "pro", "business"]
    assert all(len(p.prices.all()) == 2 for p in plans)


def test_command_reports_bad_files_clearly(tmp_path):
    bad = tmp_path / "plans.toml"
    bad.write_text("[[products]\n")
    with pytest.raises(CommandError, match="not valid TOML"):
        call_command("catalog_load", str(bad))
    with pytest.raises(CommandError, match="cannot be read"):
        call_command("catalog_load", str(tmp_path / "missing.toml"))


def test_plans_for_sale_uses_a_fixed_number_of_queries_then_the_cache(django_assert_num_queries):
    call_command("catalog_load", "demo")
    with django_assert_num_queries(2):
        plans = list(plans_for_sale())
        [list(p.prices.all()) for p in plans]
    with django_assert_num_queries(0):  # every process reads them from the shared cache
        again = plans_for_sale()
        assert [[price.amount for price in p.prices.all()] for p in again] == [
            [price.amount for price in p.prices.all()] for p in plans
        ]


def test_plans_for_sale_follow_a_catalog_change(django_capture_on_commit_callbacks):
    call_command("catalog_load", "demo")
    assert [p.code for p in plans_for_sale()] == ["starter", "pro", "business"]
    with django_capture_on_commit_callbacks(execute=True):  # the change's outbox message
        Plan.objects.filter(code="pro").update(active=False)
        catalog_changed_announce()
    assert [p.code for p in plans_for_sale()] == ["starter", "business"]


def test_plans_read_before_a_catalog_change_are_not_served_after_it(
    django_capture_on_commit_callbacks,
):
    # A reader that loaded the plans before the change and stores them after the change's
    # cache clean-up ran must not leave the old plans in the cache.
    call_command("catalog_load", "demo")
    before = list(Plan.objects.filter(active=True))
    version = cache.get(CATALOG_VERSION_KEY) or ""
    with django_capture_on_commit_callbacks(execute=True):
        Plan.objects.filter(code="pro").update(active=False)
        catalog_changed_announce()
    cache.set(PLANS_CACHE_KEY, (version, before), 300)  # the late reader's store
    assert [p.code for p in plans_for_sale()] == ["starter", "business"]
