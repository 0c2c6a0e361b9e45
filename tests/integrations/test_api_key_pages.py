"""The API key pages: the staff console (every key, operator keys issued, rotated and revoked) and the
customer's own keys under the account pages (gated by the plan's ``api_access``). Data is built
through the real services and the offline sandbox gateway; a key is checked the way the API checks
it, with ``api_key_authenticate``."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from tests.billing.conftest import add_card, new_key
from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.models import Customer
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load
from tollgate.core import clock
from tollgate.integrations.keys import (
    ApiKeyInvalid,
    api_key_authenticate,
    api_key_create,
    customer_api_key_create,
)
from tollgate.integrations.models import ApiKey

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple-42"
CATALOG = {
    "products": [
        {
            "code": "app",
            "name": "App",
            "plans": [
                {
                    "code": "basic",
                    "name": "Basic",
                    "features": {"api_access": False},
                    "prices": [{"amount": 900, "currency": "USD", "interval": "month"}],
                },
                {
                    "code": "pro",
                    "name": "Pro",
                    "features": {"api_access": True},
                    "prices": [{"amount": 2900, "currency": "USD", "interval": "month"}],
                },
            ],
        }
    ]
}
_SECRET = re.compile(r"tg_test_[A-Za-z0-9]{52}")


def secret_on(response: Any) -> str:
    """The whole key shown on a page (exactly one)."""
    found = set(_SECRET.findall(response.content.decode()))
    assert len(found) == 1, found
    return found.pop()


def keys_on(response: Any) -> list[str]:
    return _SECRET.findall(response.content.decode())


@pytest.fixture
def catalog(db: Any) -> None:
    catalog_load(document=CATALOG)


@pytest.fixture
def make_customer(db: Any) -> Callable[..., Customer]:
    def factory(email: str) -> Customer:
        user = User.objects.create_user(email=email, password=PASSWORD)
        return services.customer_get_or_create(user=user)

    return factory


def subscribe(customer: Customer, plan: str) -> None:
    add_card(customer)
    services.subscription_start(
        customer=customer,
        price=Price.objects.get(plan__code=plan),
        trial=False,
        idempotency_key=new_key(),
    )


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff_client(db: Any) -> Client:
    staff = User.objects.create_user(email="staff@example.org", password=PASSWORD, is_staff=True)
    return signed_in(staff)


@pytest.fixture
def pro(catalog: None, make_customer: Callable[..., Customer]) -> Customer:
    customer = make_customer("pro@example.org")
    subscribe(customer, "pro")
    return customer


# --- The staff console ---------------------------------------------------------------------------
STAFF_PAGES = [
    "/staff/api-keys/",
    "/staff/api-keys/key_0000000000000000000A/rotate/",
    "/staff/api-keys/key_0000000000000000000A/revoke/",
]


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_an_account_that_is_not_staff_gets_the_house_not_found_page(make_customer, path):
    member = signed_in(make_customer("member@example.org").user)
    response = member.get(path)
    assert response.status_code == 404
    assert b"Page not found" in response.content
    assert member.post(path, {"name": "x", "scopes": ["billing:read"]}).status_code == 404
    assert not ApiKey.objects.exists()


def test_staff_see_the_page_under_the_strict_policy_linked_from_the_staff_nav(staff_client):
    response = staff_client.get("/staff/api-keys/")
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]
    assert b'name="csrfmiddlewaretoken"' in response.content
    assert b'href="/staff/api-keys/" aria-current="page"' in response.content
    assert b'href="/staff/api-keys/"' in staff_client.get("/staff/").content


def test_staff_create_a_key_that_is_shown_once_and_works(staff_client):
    response = staff_client.post(
        "/staff/api-keys/",
        {
            "name": "billing sync",
            "scopes": ["entitlements:read", "usage:write"],
            "rate_check": "6000/minute",
        },
    )
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    assert "no-store" in response["Cache-Control"]
    secret = secret_on(response)
    assert b"it will not be shown again" in response.content

    key = ApiKey.objects.get()
    assert (key.name, key.kind, key.scopes) == (
        "billing sync",
        "operator",
        ["entitlements:read", "usage:write"],
    )
    assert key.rate_limits == {"check": "6000/minute"}
    identity = api_key_authenticate(presented=secret)
    assert identity.key_id == key.public_id

    listing = staff_client.get("/staff/api-keys/")
    assert keys_on(listing) == []
    assert secret.encode() not in listing.content
    assert key.display_prefix.encode() in listing.content
    assert b"working" in listing.content
    # Nothing that reaches the next page carries the key: no message, no session value.
    assert secret not in str(dict(staff_client.session))
    for event in AuditEvent.objects.all():
        assert secret not in str(event.details)
        assert key.lookup + secret[-8:] not in str(event.details)


def test_a_refused_form_is_shown_again_with_the_reason_on_its_field(staff_client):
    response = staff_client.post(
        "/staff/api-keys/",
        {"name": " ", "scopes": ["not:a-scope"], "rate_read": "lots", "expires_on": "2000-01-01"},
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert "This field is required." in page
    assert "Select a valid choice." in page
    assert "Write each rate as a number per period" in page
    assert "Choose a day after today." in page
    assert not ApiKey.objects.exists()


def test_a_key_with_an_expiry_day_stops_at_the_start_of_that_day(staff_client):
    day = clock.now().date() + dt.timedelta(days=30)
    response = staff_client.post(
        "/staff/api-keys/",
        {"name": "ci", "scopes": ["billing:read"], "expires_on": day.isoformat()},
    )
    assert response.status_code == 200
    key = ApiKey.objects.get()
    assert key.expires_at == dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def test_staff_list_customer_keys_with_their_customer(staff_client, pro):
    customer_api_key_create(customer=pro, name="customer script", scopes=["billing:read"])
    api_key_create(name="product", scopes=["customers:write"])
    page = staff_client.get("/staff/api-keys/").content.decode()
    assert "customer script" in page
    assert "pro@example.org" in page
    assert f"/staff/customers/{pro.public_id}/" in page
    assert "product" in page


def test_revoking_asks_first_then_the_key_stops_working(
    staff_client, django_capture_on_commit_callbacks
):
    issued = api_key_create(name="old server", scopes=["billing:read"])
    api_key_authenticate(presented=issued.secret)  # cached now, as in a running API
    path = f"/staff/api-keys/{issued.key.public_id}/revoke/"

    confirm = staff_client.get(path)
    assert confirm.status_code == 200
    assert b"Revoke the key" in confirm.content
    ApiKey.objects.get(revoked_at__isnull=True)  # asking changes nothing

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(path)
    assert response.status_code == 302
    assert response["Location"] == "/staff/api-keys/"
    with pytest.raises(ApiKeyInvalid):
        api_key_authenticate(presented=issued.secret)
    assert "revoked" in staff_client.get("/staff/api-keys/").content.decode()
    assert AuditEvent.objects.filter(action="api_key.revoked").count() == 1


def test_rotating_gives_a_new_key_while_the_old_one_works_for_the_overlap(staff_client):
    issued = api_key_create(
        name="worker", scopes=["usage:write"], rate_limits={"usage": "100/second"}
    )
    path = f"/staff/api-keys/{issued.key.public_id}/rotate/"
    form = staff_client.get(path)
    assert form.status_code == 200
    assert b'name="overlap_hours"' in form.content

    response = staff_client.post(path, {"overlap_hours": "2"})
    assert response.status_code == 200
    new_secret = secret_on(response)
    assert new_secret != issued.secret
    assert b"keeps working until" in response.content

    new = api_key_authenticate(presented=new_secret)
    assert new.key_id != issued.key.public_id
    assert dict(new.rate_limits) == {"usage": "100/second"}
    old = ApiKey.objects.get(pk=issued.key.pk)
    assert old.replaced_by is not None
    assert old.replaced_by.public_id == new.key_id
    assert api_key_authenticate(presented=issued.secret).key_id == issued.key.public_id

    later = clock.now() + dt.timedelta(hours=2, minutes=1)
    with clock.frozen(later):
        with pytest.raises(ApiKeyInvalid):
            api_key_authenticate(presented=issued.secret)
        assert api_key_authenticate(presented=new_secret).key_id == new.key_id

    again = staff_client.post(path, {"overlap_hours": "2"})
    assert again.status_code == 422
    assert b"Only a working key that was not rotated before can be rotated." in again.content
    assert keys_on(staff_client.get("/staff/api-keys/")) == []


def test_an_overlap_beyond_thirty_days_is_refused(staff_client):
    issued = api_key_create(name="worker", scopes=["usage:write"])
    response = staff_client.post(
        f"/staff/api-keys/{issued.key.public_id}/rotate/", {"overlap_hours": "721"}
    )
    assert response.status_code == 422
    assert ApiKey.objects.count() == 1


def test_unknown_keys_get_the_house_not_found_page(staff_client):
    for path in STAFF_PAGES[1:]:
        assert staff_client.get(path).status_code == 404
        assert staff_client.post(path).status_code == 404


# --- The customer's own keys ---------------------------------------------------------------------
def test_the_account_page_links_the_api_keys(make_customer):
    client = signed_in(make_customer("someone@example.org").user)
    assert b'href="/account/api-keys/"' in client.get("/account/").content


def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in_from_the_account_keys(client):
    response = client.get("/account/api-keys/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_without_api_access_in_the_plan_the_page_explains_and_links_to_pricing(
    catalog, make_customer
):
    customer = make_customer("basic@example.org")
    subscribe(customer, "basic")
    client = signed_in(customer.user)
    response = client.get("/account/api-keys/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Your plan does not include API access" in page
    assert 'href="/pricing/"' in page
    assert 'name="scopes"' not in page

    refused = client.post("/account/api-keys/", {"name": "x", "scopes": ["billing:read"]})
    assert refused.status_code == 403
    assert not ApiKey.objects.exists()


def test_an_account_without_billing_is_told_the_same(make_customer):
    user = User.objects.create_user(email="new@example.org", password=PASSWORD)
    client = signed_in(user)
    assert b"does not include API access" in client.get("/account/api-keys/").content
    assert client.post("/account/api-keys/", {"name": "x"}).status_code == 403


def test_a_customer_creates_a_key_of_their_own_shown_once(pro):
    client = signed_in(pro.user)
    page = client.get("/account/api-keys/")
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    # A customer chooses only among the customer scopes.
    assert b'value="customers:write"' not in page.content
    assert b'value="billing:read"' in page.content

    response = client.post(
        "/account/api-keys/", {"name": "my script", "scopes": ["billing:read", "usage:write"]}
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = secret_on(response)
    assert b"it will not be shown again" in response.content
    identity = api_key_authenticate(presented=secret)
    assert (identity.kind, identity.customer_pk) == ("customer", pro.pk)
    assert identity.scopes == frozenset({"billing:read", "usage:write"})

    listing = client.get("/account/api-keys/")
    assert keys_on(listing) == []
    assert b"my script" in listing.content
    assert secret not in str(dict(client.session))
    for event in AuditEvent.objects.filter(action="api_key.created"):
        assert secret not in str(event.details)


def test_a_customer_cannot_ask_for_an_operator_scope(pro):
    client = signed_in(pro.user)
    response = client.post("/account/api-keys/", {"name": "sneaky", "scopes": ["customers:write"]})
    assert response.status_code == 422
    assert not ApiKey.objects.exists()


def test_a_customer_rotates_and_revokes_their_own_key(pro, django_capture_on_commit_callbacks):
    issued = customer_api_key_create(customer=pro, name="mine", scopes=["billing:read"])
    client = signed_in(pro.user)

    rotated = client.post(
        f"/account/api-keys/{issued.key.public_id}/rotate/", {"overlap_hours": "1"}
    )
    assert rotated.status_code == 200
    new_secret = secret_on(rotated)
    assert api_key_authenticate(presented=new_secret).customer_pk == pro.pk
    assert api_key_authenticate(presented=issued.secret).customer_pk == pro.pk

    new_key = ApiKey.objects.get(replaces__isnull=False)
    path = f"/account/api-keys/{new_key.public_id}/revoke/"
    assert b"Revoke the key" in client.get(path).content
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(path)
    assert response.status_code == 302
    assert response["Location"] == "/account/api-keys/"
    with pytest.raises(ApiKeyInvalid):
        api_key_authenticate(presented=new_secret)


def test_another_customers_key_is_not_found_and_stays_working(pro, make_customer):
    other = make_customer("other@example.org")
    subscribe(other, "pro")
    theirs = customer_api_key_create(customer=other, name="their key", scopes=["billing:read"])
    operator = api_key_create(name="operator", scopes=["billing:read"])
    client = signed_in(pro.user)

    assert b"their key" not in client.get("/account/api-keys/").content
    for key in (theirs.key, operator.key):
        for action in ("rotate", "revoke"):
            path = f"/account/api-keys/{key.public_id}/{action}/"
            assert client.get(path).status_code == 404
            assert client.post(path, {"overlap_hours": "1"}).status_code == 404
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 0
    assert ApiKey.objects.count() == 2
    assert api_key_authenticate(presented=theirs.secret).customer_pk == other.pk


def test_a_key_made_before_the_plan_ended_can_still_be_revoked_but_not_rotated(
    pro, django_capture_on_commit_callbacks
):
    issued = customer_api_key_create(customer=pro, name="leftover", scopes=["billing:read"])
    with django_capture_on_commit_callbacks(execute=True):
        services.subscription_cancel(
            subscription=pro.subscriptions.get(), at_period_end=False, idempotency_key=new_key()
        )
    key = issued.key
    client = signed_in(pro.user)
    page = client.get("/account/api-keys/").content.decode()
    assert "Your plan does not include API access" in page
    assert "leftover" in page
    assert f"/account/api-keys/{key.public_id}/revoke/" in page
    assert f"/account/api-keys/{key.public_id}/rotate/" not in page
    assert client.post(f"/account/api-keys/{key.public_id}/rotate/").status_code == 403
    assert client.post(f"/account/api-keys/{key.public_id}/revoke/").status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert ApiKey.objects.count() == 1
