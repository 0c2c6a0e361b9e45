"""Checkout and portal links of a team's customer: the operator names the owner or admin they sign
in (``user``), which a customer whose opening account left its organisation needs; the link is
checked again when it is used."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core import signing
from django.test import Client

from tests.conftest import STRONG_PASSWORD
from tests.organisations.conftest import join  # noqa: F401  (a fixture)
from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.models import Customer
from tollgate.core import clock
from tollgate.integrations import links
from tollgate.organisations import services as org_services
from tollgate.organisations.models import Membership

pytestmark = pytest.mark.django_db

APP = "https://app.example.com"


@pytest.fixture(autouse=True)
def _product_host(settings):
    settings.API_REDIRECT_HOSTS = ["app.example.com"]


@pytest.fixture
def team(join: Callable[..., Membership], plan_price: Any) -> dict[str, Any]:  # noqa: F811
    """A customer opened by its owner, with an admin and a plain member."""
    owner = User.objects.create_user(email="owner@example.org", password=STRONG_PASSWORD)
    customer = services.customer_get_or_create(user=owner)
    organisation = customer.organisation
    admin = join(organisation, owner, "admin@example.org", "admin").user
    member = join(organisation, owner, "member@example.org", "member").user
    return {
        "customer": customer,
        "organisation": organisation,
        "owner": owner,
        "admin": admin,
        "member": member,
    }


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def _signed_in(browser: Client) -> int | None:
    value = browser.session.get("_auth_user_id")
    return int(value) if value is not None else None


def _opener_leaves(team: dict[str, Any]) -> Customer:
    """The owner who opened the customer hands ownership to the admin and leaves the team."""
    org_services.ownership_transfer(
        organisation=team["organisation"],
        actor=team["owner"],
        new_owner=team["admin"],
        password=STRONG_PASSWORD,
    )
    org_services.member_leave(organisation=team["organisation"], user=team["owner"])
    customer = Customer.objects.get(pk=team["customer"].pk)
    assert customer.user is None
    return customer


def test_a_portal_link_signs_in_the_admin_it_names(api, team):
    customer, admin = team["customer"], team["admin"]
    response = api.post(
        "/portal-links",
        {"customer": customer.public_id, "user": admin.public_id, "return_url": f"{APP}/"},
    )
    assert response.status_code == 201, response.content
    browser = Client()
    landed = browser.get(_path(response.json()["url"]))
    assert landed["Location"] == "/billing/"
    assert _signed_in(browser) == admin.pk
    assert browser.get("/billing/").status_code == 200
    assert AuditEvent.objects.filter(
        action="account.signed_in_by_portal_link", target_id=admin.public_id
    ).exists()


def test_without_a_user_the_link_signs_in_the_account_that_opened_the_customer(api, team):
    link = api.post("/portal-links", {"customer": team["customer"].public_id}).json()
    browser = Client()
    browser.get(_path(link["url"]))
    assert _signed_in(browser) == team["owner"].pk


def test_when_the_opener_left_a_link_needs_an_owner_or_admin_named(api, team, plan_price):
    customer = _opener_leaves(team)
    for path, body in (
        ("/portal-links", {"customer": customer.public_id}),
        (
            "/checkout-links",
            {"customer": customer.public_id, "plan": "pro", "success_url": f"{APP}/done"},
        ),
    ):
        refused = api.post(path, body)
        assert refused.status_code == 422, refused.content
        error = refused.json()["error"]
        assert error["code"] == "link_user_required"
        assert error["details"]["field"] == "user"
        assert "owner or admin" in error["message"]
        assert "staff" not in error["message"]
    new_owner = team["admin"]
    link = api.post(
        "/checkout-links",
        {
            "customer": customer.public_id,
            "user": new_owner.public_id,
            "plan": "pro",
            "success_url": f"{APP}/done",
        },
    )
    assert link.status_code == 201, link.content
    browser = Client()
    landed = browser.get(_path(link.json()["url"]))
    assert landed["Location"] == f"/billing/checkout/{plan_price('pro').public_id}/"
    assert _signed_in(browser) == new_owner.pk
    assert browser.get(landed["Location"]).status_code == 200
    assert AuditEvent.objects.filter(
        action="account.signed_in_by_checkout_link", target_id=new_owner.public_id
    ).exists()


def _staff_admin(team: dict[str, Any]) -> str:
    team["admin"].is_staff = True
    team["admin"].save(update_fields=["is_staff"])
    return team["admin"].public_id


def _deactivated_admin(team: dict[str, Any]) -> str:
    team["admin"].is_active = False
    team["admin"].save(update_fields=["is_active"])
    return team["admin"].public_id


def _stranger(team: dict[str, Any]) -> str:
    outsider = User.objects.create_user(email="stranger@example.org", password=STRONG_PASSWORD)
    services.customer_get_or_create(user=outsider)  # the owner of another organisation
    return outsider.public_id


@pytest.mark.parametrize(
    "who",
    [
        pytest.param(lambda team: team["member"].public_id, id="member"),
        pytest.param(_stranger, id="stranger"),
        pytest.param(_staff_admin, id="staff"),
        pytest.param(_deactivated_admin, id="deactivated"),
        pytest.param(lambda team: "usr_00000000000000000000", id="unknown"),
        pytest.param(lambda team: "someone", id="not-an-account-id"),
    ],
)
@pytest.mark.parametrize("path", ["/portal-links", "/checkout-links"])
def test_a_link_refuses_to_name_anyone_but_an_active_owner_or_admin(api, team, who, path):
    body = {"customer": team["customer"].public_id, "user": who(team)}
    if path == "/checkout-links":
        body.update(plan="pro", success_url=f"{APP}/done")
    refused = api.post(path, body)
    assert refused.status_code == 422, refused.content
    error = refused.json()["error"]
    assert error["code"] == "link_user_refused"
    assert error["details"]["field"] == "user"
    assert error["message"]


def test_a_link_of_someone_removed_before_the_click_is_invalid(api, team):
    admin = team["admin"]
    link = api.post(
        "/portal-links", {"customer": team["customer"].public_id, "user": admin.public_id}
    ).json()
    org_services.member_remove(organisation=team["organisation"], member=admin, actor=team["owner"])
    browser = Client()
    page = browser.get(_path(link["url"]))
    assert page.status_code == 400
    assert "expired or was used already" in page.content.decode()
    assert _signed_in(browser) is None


def test_a_link_of_an_admin_made_a_plain_member_before_the_click_is_invalid(api, team):
    admin = team["admin"]
    link = api.post(
        "/portal-links", {"customer": team["customer"].public_id, "user": admin.public_id}
    ).json()
    org_services.member_role_change(
        organisation=team["organisation"], member=admin, role="member", actor=team["owner"]
    )
    browser = Client()
    assert browser.get(_path(link["url"])).status_code == 400
    assert _signed_in(browser) is None


def test_a_link_of_an_account_deactivated_before_the_click_is_invalid(api, team):
    admin = team["admin"]
    link = api.post(
        "/portal-links", {"customer": team["customer"].public_id, "user": admin.public_id}
    ).json()
    _deactivated_admin(team)
    browser = Client()
    assert browser.get(_path(link["url"])).status_code == 400
    assert _signed_in(browser) is None


def test_a_link_made_before_links_named_their_user_still_signs_in_the_opener(api, team):
    customer = team["customer"]
    token = signing.dumps(
        {
            "k": "portal",
            "n": "older-link-nonce",
            "t": int(clock.now().timestamp()),
            "c": customer.public_id,
            "r": None,
        },
        salt=links._SALT,
        compress=True,
    )
    browser = Client()
    landed = browser.get(f"/billing/link/{token}/")
    assert landed.status_code == 302
    assert _signed_in(browser) == team["owner"].pk


def test_the_openapi_document_describes_who_a_link_signs_in(client):
    schemas = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    for name in ("CheckoutLinkIn", "PortalLinkIn"):
        user = schemas[name]["properties"]["user"]
        assert "owner or admin" in user["description"], name
        assert "user" not in schemas[name].get("required", []), name


def test_the_operator_reads_who_can_be_named(api, team):
    body = api.get(f"/customers/{team['customer'].public_id}/members").json()
    assert [(m["id"], m["role"]) for m in body["data"]] == [
        (team["owner"].public_id, "owner"),
        (team["admin"].public_id, "admin"),
        (team["member"].public_id, "member"),
    ]
    assert api.get("/customers/cus_nothing/members").status_code == 404
