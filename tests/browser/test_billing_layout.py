"""The billing pages' styles, measured in a real Chromium: secondary buttons look secondary whether
they are links or submit buttons, the pricing cards line up, the receipt's actions share a centre
line; at a desktop and a phone width, every page without a serious axe-core violation."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from tests.billing.conftest import add_card, new_key
from tests.browser.test_billing_journeys import assert_accessible, sign_in
from tests.conftest import STRONG_PASSWORD
from tollgate.billing import services
from tollgate.billing.models import Invoice
from tollgate.catalog.models import Price

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = Path(tempfile.gettempdir()) / "tollgate-screenshots"


@pytest.fixture
def site(live_server: Any, settings: Any) -> str:
    settings.SITE_URL = live_server.url
    call_command("catalog_load", "demo")
    return str(live_server.url)


@pytest.fixture
def subscriber(make_user: Any) -> Invoice:
    """An account on Pro, paid with a card on file: its first invoice (the receipt)."""
    user = make_user(email="styled@example.org")
    customer = services.customer_get_or_create(user=user)
    add_card(customer)
    price = Price.objects.get(plan__code="pro", interval="month")
    subscription = services.subscription_start(
        customer=customer, price=price, trial=False, idempotency_key=new_key()
    )
    return Invoice.objects.get(subscription=subscription)


def _style(locator: Any, name: str) -> str:
    return str(locator.evaluate(f"element => getComputedStyle(element).{name}"))


def _text_centre(locator: Any) -> float:
    """The vertical centre of the element's text as drawn (not of its box, which may stretch)."""
    return float(
        locator.evaluate(
            "element => { const range = document.createRange();"
            " range.selectNodeContents(element); const box = range.getBoundingClientRect();"
            " return box.top + box.height / 2; }"
        )
    )


def _look(page: Any, name: str) -> None:
    """At each width the page fits across the screen (nothing to scroll sideways) and passes
    axe-core; a screenshot of it is kept for a person to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= size["width"], f"{name} is {width} px wide at {size['width']} px"
        spilled = page.evaluate(
            "[...document.querySelectorAll('.card')]"
            ".filter(card => card.scrollWidth > card.clientWidth).length"
        )
        assert spilled == 0, f"{name}: content wider than its card at {size['width']} px"
        assert_accessible(page)
    page.set_viewport_size(DESKTOP)


def test_a_secondary_submit_button_looks_like_a_secondary_link_not_a_primary_button(
    site, page, subscriber
):
    page, problems = page
    page.set_viewport_size(DESKTOP)
    sign_in(page, site, "styled@example.org", STRONG_PASSWORD)
    page.goto(f"{site}/billing/")
    primary = page.get_by_role("link", name="Change plan")
    secondary_link = page.get_by_role("link", name="Cancel subscription")
    secondary_submit = page.get_by_role("button", name="Replace card")
    for prop in ("backgroundColor", "color", "borderColor"):
        assert _style(secondary_submit, prop) == _style(secondary_link, prop), prop
    assert _style(secondary_submit, "backgroundColor") != _style(primary, "backgroundColor")
    _look(page, "dashboard")
    assert problems.items == []


def test_the_checkout_without_a_card_is_the_secondary_choice(site, page, make_user):
    page, problems = page
    page.set_viewport_size(DESKTOP)
    make_user(email="trial@example.org")
    sign_in(page, site, "trial@example.org", STRONG_PASSWORD)
    page.goto(f"{site}/pricing/")
    page.get_by_role("link", name="Start free trial of Starter").click()
    primary = page.get_by_role("button", name="Add a card and start the trial")
    secondary = page.get_by_role("button", name="Start the trial without a card")
    assert _style(secondary, "backgroundColor") != _style(primary, "backgroundColor")
    assert _style(secondary, "backgroundColor") == "rgb(255, 255, 255)"
    assert _style(secondary, "color") == _style(primary, "backgroundColor")
    _look(page, "checkout")
    assert problems.items == []


def test_the_pricing_cards_line_up_at_the_top(site, page):
    page, problems = page
    page.set_viewport_size(DESKTOP)
    page.goto(f"{site}/pricing/")
    cards = page.locator(".plans > .card")
    assert cards.count() == 3
    tops = [cards.nth(index).bounding_box()["y"] for index in range(3)]
    assert max(tops) - min(tops) < 1, tops
    _look(page, "pricing")
    assert problems.items == []


def test_the_receipt_actions_share_a_centre_line(site, page, subscriber):
    page, problems = page
    sign_in(page, site, "styled@example.org", STRONG_PASSWORD)
    page.goto(f"{site}/billing/invoices/{subscriber.public_id}/")
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        download = _text_centre(page.get_by_role("link", name="Download PDF"))
        back = _text_centre(page.get_by_role("link", name="Back to billing"))
        assert abs(download - back) < 1, (size, download, back)
    _look(page, "receipt")
    assert problems.items == []


def test_the_plan_change_preview_lists_what_the_plan_includes_at_both_widths(
    site, page, subscriber
):
    page, problems = page
    page.set_viewport_size(DESKTOP)
    sign_in(page, site, "styled@example.org", STRONG_PASSWORD)
    page.goto(f"{site}/billing/change/")
    page.get_by_role("link", name="Preview Business per month").click()
    includes = page.get_by_role("list", name="Business includes:")
    assert includes.get_by_text("API calls per month: 2,000,000").is_visible()
    assert includes.get_by_text("SSO", exact=True).is_visible()
    _look(page, "change-plan")
    assert problems.items == []
