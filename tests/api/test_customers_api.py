"""Customers through the API: created or found by the product's own id, named by either id."""

from __future__ import annotations

import pytest
from django.core import mail

from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.billing.models import Customer
from tollgate.integrations import keys

pytestmark = pytest.mark.django_db


def test_creating_a_customer_returns_201_and_the_same_external_id_finds_it(api):
    body = {"external_id": "user_42", "email": "ada@example.org", "name": "Ada"}
    created = api.post("/customers", body)
    assert created.status_code == 201
    customer = created.json()
    assert customer["id"].startswith("cus_")
    assert {k: customer[k] for k in ("external_id", "email", "name", "object")} == {
        "external_id": "user_42",
        "email": "ada@example.org",
        "name": "Ada",
        "object": "customer",
    }
    again = api.post("/customers", {**body, "email": "other@example.org"})
    assert again.status_code == 200
    assert again.json() == customer  # found, not changed
    assert Customer.objects.count() == 1
    (audited,) = AuditEvent.objects.filter(action="customer.created")
    assert audited.actor_repr.startswith("key_")  # the API key that created it


def test_a_customer_created_here_has_no_password_unless_a_login_is_asked_for(api):
    api.post("/customers", {"external_id": "u1", "email": "one@example.org"})
    assert not User.objects.get(email="one@example.org").has_usable_password()
    assert mail.outbox == []
    api.post("/customers", {"external_id": "u2", "email": "two@example.org", "create_login": True})
    assert not User.objects.get(email="two@example.org").has_usable_password()
    (invite,) = mail.outbox
    assert invite.to == ["two@example.org"]
    assert "/accounts/password/reset/key/" in invite.body


def test_either_id_names_the_customer(api):
    created = api.post("/customers", {"external_id": "user_7", "email": "s@example.org"}).json()
    assert api.get("/customers/user_7").json() == created
    assert api.get(f"/customers/{created['id']}").json() == created
    missing = api.get("/customers/nobody")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "customer_not_found"


def test_an_email_of_another_account_is_a_conflict_naming_that_customer(api):
    first = api.post("/customers", {"external_id": "a", "email": "Taken@example.org"}).json()
    response = api.post("/customers", {"external_id": "b", "email": "taken@example.org"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "customer_email_taken"
    assert response.json()["error"]["details"] == {"customer": first["id"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "x@example.org", "external_id": "has space"}, "external_id"),
        ({"email": "x@example.org", "external_id": "cus_7F3KQ2ABCDEFGHJKMNPQ"}, "external_id"),
        ({"email": "x@example.org", "name": "n" * 151}, "body.name"),
        ({"email": "x@example.org", "create_login": "yes"}, "body.create_login"),
    ],
)
def test_invalid_customers_are_refused_with_the_field_named(api, body, field):
    response = api.post("/customers", body)
    assert response.status_code == 422
    error = response.json()["error"]
    fields = [item["field"] for item in error["details"].get("fields", [])]
    assert error["details"].get("field") == field or field in fields


def test_a_malformed_json_body_is_a_clear_error_not_a_500(api, client, operator_key):
    response = client.post(
        "/api/v1/customers",
        "{not json",
        content_type="application/json",
        headers={"Authorization": f"Bearer {operator_key}"},
    )
    assert response.status_code in (400, 422)
    assert "error" in response.json()


def test_customers_are_listed_newest_first_a_page_at_a_time(api):
    for number in range(25):
        api.post("/customers", {"external_id": f"u{number}", "email": f"u{number}@example.org"})
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 10, **({"starting_after": cursor} if cursor else {})}
        page = api.get("/customers", **params).json()
        pages += 1
        seen.extend(item["external_id"] for item in page["data"])
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert pages == 3
    assert seen == [f"u{number}" for number in reversed(range(25))]
    assert api.get("/customers", limit=101).status_code == 422
    assert api.get("/customers", starting_after="cus_nothing").status_code == 422
    assert [c["external_id"] for c in api.get("/customers", external_id="u3").json()["data"]] == [
        "u3"
    ]


def test_updating_a_customer_changes_its_email_name_and_external_id(api):
    created = api.post("/customers", {"external_id": "old", "email": "a@example.org"}).json()
    response = api.patch(
        "/customers/old", {"email": "b@example.org", "name": "B", "external_id": "new"}
    )
    assert response.status_code == 200
    assert response.json()["email"] == "b@example.org"
    assert api.get("/customers/new").json()["id"] == created["id"]
    assert api.get("/customers/old").status_code == 404  # the cached old id is forgotten
    assert User.objects.get(billing_customer__public_id=created["id"]).email == "b@example.org"
    api.post("/customers", {"external_id": "other", "email": "c@example.org"})
    clash = api.patch("/customers/other", {"external_id": "new"})
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "external_id_taken"


def test_a_customer_key_sees_only_its_own_customer(api, make_api_customer, subscribe):
    mine, theirs = make_api_customer("mine"), make_api_customer("theirs")
    subscribe(mine, "pro")
    own = keys.customer_api_key_create(
        customer=mine, name="mine", scopes=["billing:read", "entitlements:read"]
    ).secret
    assert api.get("/customers/mine", key=own).status_code == 200
    assert api.get("/customers/theirs", key=own).status_code == 404
    assert api.get(f"/customers/{theirs.public_id}/entitlements", key=own).status_code == 404
    assert [c["id"] for c in api.get("/customers", key=own).json()["data"]] == [mine.public_id]
    assert api.post("/customers", {"email": "z@example.org"}, key=own).status_code == 403
