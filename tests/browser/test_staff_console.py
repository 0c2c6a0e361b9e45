"""The staff customer page in a real Chromium at a laptop's and a phone's width: nothing to
scroll sideways, the summary in view without scrolling on the laptop, the audit trail's details
open without JavaScript, and axe-core finds no serious or critical violation. The staff lists too,
with their dates on one line at a laptop's width and the whole width of a wide screen used.
Screenshots are kept for a person to look at."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.billing.conftest import CARD_OK, CATALOG, add_card, new_key
from tests.browser.test_staff_journey import assert_accessible, sign_in
from tollgate.billing import services
from tollgate.billing.models import Customer, PaymentAttempt, Refund
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load
from tollgate.integrations import keys
from tollgate.integrations.webhooks import webhook_endpoint_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = Path(tempfile.gettempdir()) / "tollgate-screenshots"


WIDE = {"width": 1920, "height": 1080}
DATE = r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2})?( UTC)?$"


def date_cells(page: Any) -> tuple[int, list[str]]:
    """How many table cells hold only a date (or a date and time), and those drawn on more than
    one line."""
    found = page.evaluate(
        f"[...document.querySelectorAll('table td')].filter(cell => /{DATE}/.test(cell.textContent.trim())).length"
    )
    return int(found), list(
        page.evaluate(
            f"""[...document.querySelectorAll('table td')]
            .filter(cell => /{DATE}/.test(cell.textContent.trim()))
            .filter(cell => {{
                const range = document.createRange();
                range.selectNodeContents(cell);
                const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
                return tops.size > 1;
            }})
            .map(cell => cell.textContent.trim())"""
        )
    )


@pytest.fixture
def customer(live_server: Any, settings: Any, make_user: Any) -> Customer:
    """A customer on Pro who paid by card and was refunded part of it, with some history."""
    settings.SITE_URL = live_server.url
    catalog_load(document=CATALOG)
    staff = make_user("support@example.org", is_staff=True)
    customer = services.customer_get_or_create(user=make_user("a.long.address@example.org"))
    add_card(customer, CARD_OK)
    services.subscription_start(
        customer=customer,
        price=Price.objects.get(plan__code="pro", interval="month"),
        idempotency_key=new_key(),
    )
    payment = PaymentAttempt.objects.get(invoice__customer=customer)
    for amount in (300, 200, 100):
        services.refund_issue(
            payment=payment,
            amount=amount,
            reason=Refund.Reason.REQUESTED_BY_CUSTOMER,
            note="Charged during the outage",
            actor=staff,
            idempotency_key=new_key(),
        )
    return customer


def test_the_customer_page_fits_a_laptop_and_a_phone_with_the_summary_in_view(
    live_server, page, customer
):
    page, problems = page
    base = live_server.url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sign_in(page, base, "support@example.org")
    page.goto(f"{base}/staff/customers/{customer.public_id}/")

    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(SCREENSHOTS / f"staff-customer-{label}.png"), full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= size["width"], f"the page is {width} px wide at {size['width']} px"
        assert_accessible(page)
        if label == "desktop":
            bottom = page.locator("[data-summary]").evaluate(
                "element => element.getBoundingClientRect().bottom"
            )
            assert bottom <= size["height"], f"the summary ends at {bottom} px"
            summary = page.locator("[data-summary]").inner_text()
            for expected in ("Pro", "$29.00", "$23.00", "3 refunds", "nothing owed"):
                assert expected in summary, expected

    page.set_viewport_size(DESKTOP)
    details = page.locator("#audit details").first
    assert not details.locator("ul").is_visible()
    details.locator("summary").click()
    assert details.locator("ul").is_visible()

    page.get_by_label("Action").select_option("billing.refund_requested")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**action=billing.refund_requested**")
    assert page.locator("#audit tbody tr").count() == 3
    assert_accessible(page)
    page.screenshot(path=str(SCREENSHOTS / "staff-customer-filtered.png"), full_page=False)
    assert problems.items == []


def test_lookup_results_and_the_staff_lists_fit_a_phone_and_pass_axe(
    live_server, page, customer, make_user
):
    page, problems = page
    base = live_server.url
    services.customer_get_or_create(user=make_user("a.longer.address@example.org"))
    keys.api_key_create(name="Reporting job", scopes=["billing:read"], expires_at=None)
    endpoint = webhook_endpoint_create(
        url="https://93.184.215.14/hooks", event_types=[], description="CRM", actor=None
    )[0]
    sign_in(page, base, "support@example.org")
    dated = 0
    for path in (
        "/staff/?q=a.lo&sort=email&dir=asc",
        "/staff/events/",
        "/staff/disputes/",
        "/staff/reconciliation/",
        "/staff/api-keys/",
        "/staff/webhooks/",
        f"/staff/webhooks/{endpoint.public_id}/",
        f"/staff/customers/{customer.public_id}/",
    ):
        page.goto(base + path)
        for size in (DESKTOP, PHONE):
            page.set_viewport_size(size)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= size["width"], f"{path} is {width} px wide at {size['width']} px"
            assert_accessible(page)
            if size is DESKTOP:
                found, wrapped = date_cells(page)
                dated += found
                assert wrapped == [], f"{path}: dates wrap at 1280 px"
        page.set_viewport_size(WIDE)
        used = page.evaluate("document.querySelector('main').getBoundingClientRect().width")
        assert used >= WIDE["width"] - 100, f"{path} uses {used} px of {WIDE['width']}"
    assert dated >= 10  # the lists above show dates
    page.goto(base + "/staff/?q=a.lo&sort=email&dir=asc")
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=str(SCREENSHOTS / "staff-lookup-desktop.png"))
    assert page.locator('th[aria-sort="ascending"]').inner_text().startswith("Billing email")
    assert problems.items == []
