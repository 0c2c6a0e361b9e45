"""A team in a real Chromium: the owner invites by email, the invitee accepts through the mailed
link and sees the plan their organisation pays for, but not its billing or invoices. Every page
passes axe-core without a serious or critical violation, with no console error or CSP violation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.billing.conftest import add_card, new_key
from tests.browser.conftest import PageProblems
from tests.browser.test_billing_journeys import CATALOG, assert_accessible, mailed_link, sign_in
from tests.conftest import STRONG_PASSWORD
from tollgate.billing import services
from tollgate.billing.models import Invoice
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def site(live_server: Any, settings: Any) -> str:
    settings.SITE_URL = live_server.url
    catalog_load(document=CATALOG)
    return str(live_server.url)


def test_invite_accept_and_the_member_sees_the_plan_but_not_the_invoices(
    site, page, browser, make_user
):
    page, problems = page
    owner = make_user(email="owner@example.org")
    customer = services.customer_get_or_create(user=owner)
    add_card(customer)
    pro = Price.objects.get(plan__code="pro", interval="month")
    services.subscription_start(customer=customer, price=pro, idempotency_key=new_key())
    invoice = Invoice.objects.get()
    make_user(email="ann@example.org")

    sign_in(page, site, "owner@example.org", STRONG_PASSWORD)
    page.goto(f"{site}/account/organisation/")
    assert_accessible(page)
    page.get_by_label("Email address").fill("ann@example.org")
    page.get_by_label("Role").select_option("member")
    page.get_by_role("button", name="Send the invitation").click()
    assert page.get_by_text("Invitation sent to ann@example.org.").is_visible()
    assert page.get_by_role("cell", name="ann@example.org", exact=True).is_visible()
    assert_accessible(page)

    context = browser.new_context()
    context.set_default_timeout(10_000)
    member = context.new_page()
    member_problems = PageProblems()
    member_problems.watch(member)
    try:
        sign_in(member, site, "ann@example.org", STRONG_PASSWORD)
        member.goto(mailed_link("ann@example.org", "/organisation/invitations/"))
        assert member.get_by_text("invites you to join").is_visible()
        assert_accessible(member)
        member.get_by_role("button", name="Accept and join").click()
        member.wait_for_url(f"{site}/account/organisation/")
        assert member.get_by_text("Welcome: you joined the organisation.").is_visible()
        assert member.get_by_text("Pro (active)").is_visible()
        assert member.get_by_text("api_access").is_visible()
        assert_accessible(member)

        for path in ("/billing/", f"/billing/invoices/{invoice.public_id}/"):
            response = member.goto(f"{site}{path}")
            assert response is not None
            assert response.status == 403
            assert member.get_by_text("manage its plan, card and invoices").is_visible()
            assert invoice.number not in member.content()
        assert_accessible(member)
    finally:
        context.close()
    # The browser reports each refused page (403) as a failed load; nothing else is allowed.
    refused = "the server responded with a status of 403"
    assert problems.items == []
    assert [item for item in member_problems.items if refused not in item] == []
