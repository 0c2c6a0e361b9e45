"""Coupons and promotion codes in the admin: added through the services (audited), never edited,
archived with an action."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tollgate.audit.models import AuditEvent
from tollgate.billing.models import Coupon, PromotionCode

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, staff, catalog):
    staff.is_superuser = True
    staff.save(update_fields=["is_superuser"])
    client.force_login(staff)
    return client


def test_staff_add_a_coupon_and_a_code_in_the_admin_then_archive_them(admin_client):
    response = admin_client.post(
        reverse("admin:billing_coupon_add"),
        {"name": "Spring", "percent_off": "12.5", "duration": "repeating", "duration_periods": 3},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    coupon = Coupon.objects.get()
    assert (coupon.percent_off, coupon.duration_periods) == (12.5, 3)
    response = admin_client.post(
        reverse("admin:billing_promotioncode_add"), {"coupon": coupon.pk, "code": "SPRING-25"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert PromotionCode.objects.get().code == "SPRING-25"

    detail = admin_client.get(reverse("admin:billing_coupon_change", args=[coupon.pk]))
    assert b'name="_save"' not in detail.content
    admin_client.post(
        reverse("admin:billing_coupon_changelist"),
        {"action": "archive", "_selected_action": [coupon.pk]},
    )
    coupon.refresh_from_db()
    assert coupon.archived_at is not None
    assert set(AuditEvent.objects.values_list("action", flat=True)) >= {
        "billing.coupon_created",
        "billing.promotion_code_created",
        "billing.coupon_archived",
    }


def test_a_coupon_with_both_a_percentage_and_an_amount_is_refused_on_the_form(admin_client):
    response = admin_client.post(
        reverse("admin:billing_coupon_add"),
        {
            "name": "Both",
            "percent_off": "10",
            "amount_off": 500,
            "currency": "USD",
            "duration": "once",
        },
    )
    assert response.status_code == 200
    assert "Give either a percentage" in response.content.decode()
    assert not Coupon.objects.exists()
