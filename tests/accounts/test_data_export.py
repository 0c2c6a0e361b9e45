"""A person downloads their own data from the account page: one JSON file, theirs only, no secrets."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.billing.conftest import add_card, new_key, price, staff  # noqa: F401  (fixtures)
from tests.conftest import STRONG_PASSWORD
from tests.web.conftest import catalog  # noqa: F401  (fixture: plans with api access)
from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.audit.services import audit_record
from tollgate.billing import services
from tollgate.billing.models import Invoice, PaymentMethod
from tollgate.core import context
from tollgate.integrations import keys
from tollgate.integrations.models import ApiKey

pytestmark = pytest.mark.django_db

EXPORT = "/account/export/"


def _signed_in(email: str, make_user: Callable[..., User]) -> tuple[User, Client]:
    user = make_user(email=email)
    client = Client()
    response = client.post("/accounts/login/", {"login": email, "password": STRONG_PASSWORD})
    assert response.status_code == 302
    return user, client


def _subscribed(
    user: User, find_price: Callable[..., Any], *, card: str = "4242424242424242"
) -> None:
    customer = services.customer_get_or_create(user=user)
    add_card(customer, number=card)
    services.subscription_start(
        customer=customer, price=find_price("pro"), trial=False, idempotency_key=new_key()
    )
    keys.customer_api_key_create(customer=customer, name="ci", scopes=["billing:read"], actor=user)


def _export(client: Client) -> dict[str, Any]:
    response = client.get(EXPORT)
    assert response.status_code == 200
    return json.loads(response.content)


def test_the_export_is_a_json_download_never_cached(make_user):
    _, client = _signed_in("jo@example.org", make_user)
    response = client.get(EXPORT)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith('attachment; filename="tollgate-export-')
    assert response["Content-Disposition"].endswith('.json"')
    assert "no-store" in response["Cache-Control"]


def test_the_export_needs_a_signed_in_account_and_refuses_writes(make_user, client):
    response = client.get(EXPORT)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
    _, signed_in = _signed_in("jo@example.org", make_user)
    assert signed_in.post(EXPORT).status_code == 405


def test_the_account_page_links_to_the_download(make_user):
    _, client = _signed_in("jo@example.org", make_user)
    page = client.get(reverse("web:account")).content.decode()
    assert "Download your data" in page
    assert EXPORT in page


def test_an_account_without_billing_exports_its_account_and_activity(make_user):
    user, client = _signed_in("jo@example.org", make_user)
    document = _export(client)
    assert document["account"]["email"] == "jo@example.org"
    assert document["account"]["id"] == user.public_id
    assert document["account"]["last_login_at"] is not None
    assert document["account"]["email_addresses"] == [
        {"email": "jo@example.org", "primary": True, "verified": True}
    ]
    assert document["customer"] is None
    assert document["invoices"] == []
    assert any(event["by_you"] for event in document["audit_events"])


def test_the_export_holds_billing_keys_and_activity_without_secrets(make_user, price):  # noqa: F811  (the fixture)
    user, client = _signed_in("jo@example.org", make_user)
    _subscribed(user, price)
    document = _export(client)

    assert document["customer"]["email"] == "jo@example.org"
    [subscription] = document["subscriptions"]
    assert subscription["plan"] == "Pro"
    assert subscription["status"] == "active"
    assert subscription["cancel_at_period_end"] is False
    [invoice] = document["invoices"]
    stored = Invoice.objects.get(customer__user=user)
    assert invoice["number"] == stored.number
    assert invoice["total"] == {"minor_units": 2900, "formatted": "$29.00"}
    assert invoice["currency"] == "USD"
    assert invoice["paid_at"] is not None
    assert invoice["lines"][0]["amount"]["minor_units"] == 2900
    [payment] = document["payments"]
    assert payment["status"] == "succeeded"
    assert payment["card"]["last4"] == "4242"
    assert set(payment["card"]) == {"brand", "last4"}
    [key] = document["api_keys"]
    stored_key = ApiKey.objects.get(customer__user=user)
    assert key["name"] == "ci"
    assert key["prefix"] == stored_key.display_prefix
    assert key["scopes"] == ["billing:read"]

    body = json.dumps(document)
    card = PaymentMethod.objects.get(customer__user=user)
    for secret in (user.password, stored_key.secret_hash, card.gateway_token):
        assert secret not in body
    for name in ("password", "secret_hash", "gateway_token", "gateway_reference", "idempotency"):
        assert name not in body
    assert "4242424242424242" not in body


def test_each_export_holds_only_its_own_account(make_user, price):  # noqa: F811  (the fixture)
    jo, jo_client = _signed_in("jo@example.org", make_user)
    sam, sam_client = _signed_in("sam@example.org", make_user)
    _subscribed(jo, price)
    _subscribed(sam, price, card="5555555555554444")

    for me, other, client in ((jo, sam, jo_client), (sam, jo, sam_client)):
        document = _export(client)
        body = json.dumps(document)
        assert me.email in body
        assert other.email not in body
        assert other.public_id not in body
        other_invoice = Invoice.objects.get(customer__user=other)
        assert other_invoice.number not in body
        assert other_invoice.public_id not in body
        assert len(document["invoices"]) == 1
        assert len(document["payments"]) == 1
        assert len(document["api_keys"]) == 1


def test_staff_actions_on_the_account_are_listed_without_the_staff_address(make_user, staff):  # noqa: F811  (the fixture)
    user, client = _signed_in("jo@example.org", make_user)
    token = context.bind(context.RequestContext(ip="203.0.113.9"))
    try:
        audit_record(action="staff.viewed_account", actor=staff, target=user)
    finally:
        context.reset(token)
    events = _export(client)["audit_events"]
    [viewed] = [event for event in events if event["action"] == "staff.viewed_account"]
    assert viewed == {
        "action": "staff.viewed_account",
        "at": viewed["at"],
        "by_you": False,
        "ip": None,
    }
    assert staff.public_id not in json.dumps(events)


def test_the_export_is_audited(make_user):
    user, client = _signed_in("jo@example.org", make_user)
    _export(client)
    event = AuditEvent.objects.get(action="account.data_exported")
    assert event.actor == user
    assert event.target_id == user.public_id
