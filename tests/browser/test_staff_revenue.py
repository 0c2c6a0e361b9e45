"""The revenue page in a real Chromium at a desktop and a phone width: every chart drawn, the
tables open, axe-core finds no serious violation and nothing breaks the CSP. Screenshots are
written to ``var/screenshots/`` for a person to look at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.billing.conftest import catalog, make_customer  # noqa: F401  (fixtures)
from tests.browser.test_staff_journey import assert_accessible, sign_in
from tests.staff.test_revenue_history import start, three_months  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


# The smallest text size (CSS px on the screen) a chart's labels may be drawn at.
READABLE_PX = 12


def chart_texts(page: Any) -> list[dict[str, Any]]:
    """Each text of each chart: its words, the size it is drawn at once the chart is scaled to the
    page, and whether it lies within its chart."""
    return list(
        page.evaluate(
            """[...document.querySelectorAll('svg.chart text')].map(text => {
                const svg = text.ownerSVGElement, frame = svg.getBoundingClientRect();
                const scale = frame.width / svg.viewBox.baseVal.width;
                const box = text.getBoundingClientRect();
                return {
                    text: text.textContent,
                    size: parseFloat(getComputedStyle(text).fontSize) * scale,
                    inside: box.left >= frame.left - 1 && box.right <= frame.right + 1
                        && box.top >= frame.top - 1 && box.bottom <= frame.bottom + 1,
                };
            })"""
        )
    )


@pytest.fixture
def finance(live_server: Any, settings: Any, make_user: Any) -> None:
    settings.SITE_URL = live_server.url
    make_user("finance@example.org", is_staff=True)


@pytest.mark.parametrize("width", [1280, 390])
def test_the_revenue_page_reads_well_at_desktop_and_phone_widths(
    live_server,
    page,
    finance,
    three_months,  # noqa: F811  (the fixture)
    width,
):
    page, problems = page
    page.set_viewport_size({"width": width, "height": 900})
    sign_in(page, live_server.url, "finance@example.org")
    response = page.goto(f"{live_server.url}/staff/revenue/?months=12")
    assert response is not None
    assert response.status == 200
    assert page.locator("svg.chart").count() == 5
    assert page.get_by_role("img", name="MRR at each month-end, USD").count() == 1
    for summary in page.locator("details > summary").all():
        summary.click()
    assert page.get_by_role("table", name="MRR movements per month, USD").is_visible()
    assert_accessible(page)
    # Every chart's text reads at a size a person can read, and none of it is cut off by its chart.
    for text in chart_texts(page):
        assert text["size"] >= READABLE_PX, f"{text['text']!r} drawn at {text['size']:.1f} px"
        assert text["inside"], f"{text['text']!r} is cut off by its chart"
    # Nothing wider than the screen except inside a scrolling section.
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"revenue-{width}.png"), full_page=True)
    assert problems.items == []
