"""Only staff reach the staff pages; everyone else gets the house pages, and the header links the
staff area for staff only."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

PAGES = [
    "/staff/",
    "/staff/customers/cus_0000000000000000000A/",
    "/staff/payments/pay_0000000000000000000A/refund/",
    "/staff/subscriptions/sub_0000000000000000000A/cancel/",
    "/staff/subscriptions/sub_0000000000000000000A/extend/",
    "/staff/subscriptions/sub_0000000000000000000A/seats/",
    "/staff/invoices/inv_0000000000000000000A/retry/",
    "/staff/reconciliation/",
    "/staff/reconciliation/rec_0000000000000000000A/",
    "/staff/events/",
    "/staff/revenue/",
]


@pytest.mark.parametrize("path", PAGES)
def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("path", PAGES)
def test_an_account_that_is_not_staff_gets_the_house_not_found_page(member_client, path):
    response = member_client.get(path)
    assert response.status_code == 404
    assert b"Page not found" in response.content
    assert b"Staff" not in response.content


def test_a_post_from_an_account_that_is_not_staff_changes_nothing(member_client):
    response = member_client.post("/staff/events/sandbox/sbevt_1/retry/")
    assert response.status_code == 404


@pytest.mark.parametrize(
    "path", ["/staff/", "/staff/reconciliation/", "/staff/events/", "/staff/revenue/"]
)
def test_staff_see_the_staff_pages_under_the_strict_policy(staff_client, path):
    response = staff_client.get(path)
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    policy = response["Content-Security-Policy"]
    assert "'unsafe-inline'" not in policy
    assert "nonce-" in policy
    assert b"/static/tollgate/staff.css" in response.content


def test_unknown_staff_records_get_the_house_not_found_page(staff_client):
    response = staff_client.get("/staff/customers/cus_0000000000000000000A/")
    assert response.status_code == 404
    assert b"Page not found" in response.content


def test_the_header_links_the_staff_area_for_staff_only(staff_client, member_client):
    assert b'href="/staff/"' in staff_client.get("/").content
    assert b'href="/staff/"' not in member_client.get("/").content


def test_event_retry_takes_only_a_post(staff_client):
    assert staff_client.get("/staff/events/sandbox/sbevt_1/retry/").status_code == 405
