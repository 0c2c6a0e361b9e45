"""The unsubscribe page of marketing email, in a real Chromium: strict CSP, no console error,
usable by keyboard, no serious accessibility problem."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.urls import reverse

from tollgate.accounts.services import marketing_unsubscribe_token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SERIOUS = {"serious", "critical"}


def serious_violations(page):
    results = Axe().run(page)
    return [
        violation["id"]
        for violation in results.response["violations"]
        if violation.get("impact") in SERIOUS
    ]


def test_the_unsubscribe_page_asks_first_and_unsubscribes_by_keyboard(live_server, page, user):
    page, problems = page
    path = reverse("web:email_unsubscribe", args=[marketing_unsubscribe_token(user=user)])
    page.goto(live_server.url + path)
    assert page.get_by_role("heading", name="Unsubscribe").is_visible()
    assert serious_violations(page) == []
    user.refresh_from_db()
    assert user.marketing_opt_out_at is None

    button = page.get_by_role("button", name="Unsubscribe")
    for _ in range(20):  # past the skip link and the navigation
        page.keyboard.press("Tab")
        if button.evaluate("element => element === document.activeElement"):
            break
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="You are unsubscribed").wait_for()
    assert serious_violations(page) == []
    user.refresh_from_db()
    assert user.marketing_opt_out_at is not None
    assert problems.items == []
