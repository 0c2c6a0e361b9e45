from __future__ import annotations

import pytest
from django.db import transaction

from tests.conftest import STRONG_PASSWORD
from tollgate.audit.models import AppendOnlyError, AuditEvent
from tollgate.audit.selectors import audit_events_for_target
from tollgate.audit.services import audit_record
from tollgate.catalog.models import Product
from tollgate.core import context

pytestmark = pytest.mark.django_db


def test_audit_events_carry_request_facts_and_scrubbed_details(user):
    token = context.bind(
        context.RequestContext(request_id="req-12345678", ip="203.0.113.7", user_agent="UA/1")
    )
    try:
        event = audit_record(
            action="test.happened",
            actor=user,
            target=user,
            details={"password": "hunter2", "note": "ok"},
        )
    finally:
        context.reset(token)
    assert event.ip == "203.0.113.7"
    assert event.request_id == "req-12345678"
    assert event.user_agent == "UA/1"
    assert event.actor_repr == user.public_id
    assert event.target_type == "accounts.user"
    assert event.target_id == user.public_id
    assert event.details == {"password": "[redacted]", "note": "ok"}
    assert audit_events_for_target(target=user) == [event]


def test_audit_events_cannot_be_updated_or_deleted_through_the_orm(user):
    event = audit_record(action="test.happened", actor=user)
    event.action = "test.rewritten"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action="x")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "test.happened"


def test_an_audit_record_rolls_back_with_the_change_it_records(user):
    with pytest.raises(RuntimeError), transaction.atomic():
        Product.objects.create(code="gone", name="Gone")
        audit_record(action="catalog.product_created", actor=user)
        raise RuntimeError("the change failed")
    assert not AuditEvent.objects.filter(action="catalog.product_created").exists()


def test_anonymous_actor_is_recorded_as_system():
    from django.contrib.auth.models import AnonymousUser

    event = audit_record(action="system.tick", actor=AnonymousUser())
    assert event.actor is None
    assert event.actor_repr == ""
    assert "system" in str(event)


@pytest.fixture
def staff_client(client, make_user):
    staff = make_user(email="ops@example.org", is_staff=True, is_superuser=True)
    client.post("/accounts/login/", {"login": staff.email, "password": STRONG_PASSWORD})
    return client, staff


def test_admin_changes_are_audited_with_the_staff_actor(staff_client):
    client, staff = staff_client
    response = client.post(
        "/admin/catalog/product/add/",
        {"code": "extra", "name": "Extra", "description": "", "active": "on"},
    )
    assert response.status_code == 302, response.content[:500]
    product = Product.objects.get(code="extra")
    added = AuditEvent.objects.get(action="admin.add")
    assert added.actor == staff
    assert added.target_id == product.public_id

    client.post(
        f"/admin/catalog/product/{product.pk}/change/",
        {"code": "extra", "name": "Extra 2", "description": ""},
    )
    assert AuditEvent.objects.filter(action="admin.change", target_id=product.public_id).exists()

    client.post(f"/admin/catalog/product/{product.pk}/delete/", {"post": "yes"})
    deleted = AuditEvent.objects.get(action="admin.delete")
    assert deleted.details == {"repr": "Extra 2"}


def test_admin_bulk_delete_audits_every_object(staff_client):
    client, _ = staff_client
    products = [Product.objects.create(code=f"p{i}", name=f"P{i}") for i in range(3)]
    response = client.post(
        "/admin/catalog/product/",
        {"action": "delete_selected", "_selected_action": [p.pk for p in products], "post": "yes"},
    )
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="admin.delete").count() == 3


def test_audit_log_is_read_only_in_the_admin(staff_client):
    client, staff = staff_client
    event = audit_record(action="test.happened", actor=staff)
    assert client.get("/admin/audit/auditevent/").status_code == 200
    assert client.get(f"/admin/audit/auditevent/{event.pk}/change/").status_code == 200
    assert client.get("/admin/audit/auditevent/add/").status_code == 403
    assert (
        client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_admin_sign_in_goes_through_the_account_flow(client):
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2F"


def test_empty_details_are_not_recorded(user):
    event = audit_record(
        action="test.happened",
        target=user,
        details={"decline": "", "kind": None, "lines": [], "extra": {}, "amount": 0, "ok": False},
    )
    assert event.details == {"amount": 0, "ok": False}
