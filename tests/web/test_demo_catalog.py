"""The demo catalog `make run` loads lets a person try every flow: plans with a trial, whose
checkout also offers to pay now and skip it, and a paid plan without a trial, which is paid at once."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.urls import reverse

from tollgate.catalog.models import Plan, Price

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(db) -> None:
    call_command("catalog_load", "demo")


def _checkout(client, plan: str) -> str:
    price = Price.objects.get(plan__code=plan, interval="month")
    response = client.get(reverse("billing:checkout", args=[price.public_id]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_demo_catalog_has_paid_plans_with_and_without_a_trial(demo):
    paid = Plan.objects.filter(prices__amount__gt=0).distinct()
    assert paid.filter(trial_days__gt=0).exists()
    assert paid.filter(trial_days=0).exists()


def test_checkout_offers_to_skip_the_trial_where_the_plan_has_one(demo, billing_client):
    with_trial = _checkout(billing_client, "pro")
    assert "Start the trial without a card" in with_trial
    assert "Pay now and skip the trial" in with_trial

    without_trial = Plan.objects.filter(trial_days=0, prices__amount__gt=0).first()
    assert without_trial is not None
    page = _checkout(billing_client, without_trial.code)
    assert "trial" not in page.lower()
    assert "Continue to card details" in page
