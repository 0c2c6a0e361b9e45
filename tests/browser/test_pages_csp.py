"""Every kind of page renders under the strict CSP in a real Chromium without a console error:
public pages, account pages, the admin, the API docs and the error pages."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from tests.conftest import STRONG_PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_pages_render_without_console_errors_or_csp_violations(live_server, page, make_user):
    page, problems = page
    call_command("catalog_load", "demo")
    make_user(email="ops@example.org", is_staff=True, is_superuser=True)
    base = live_server.url

    for path in ("/", "/pricing/", "/pricing/?interval=year", "/accounts/signup/", "/api/v1/docs"):
        page.goto(base + path)
    page.wait_for_selector("#swagger-ui .information-container")

    page.goto(f"{base}/accounts/login/")
    page.fill("#id_login", "ops@example.org")
    page.fill("#id_password", STRONG_PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{base}/")
    for path in (
        "/account/",
        "/accounts/email/",
        "/accounts/password/change/",
        "/accounts/2fa/",
        "/accounts/sessions/",
        "/admin/",
        "/admin/catalog/plan/",
        "/admin/audit/auditevent/",
        "/account/api-keys/",
        "/staff/api-keys/",
        "/admin/integrations/apikey/",
        "/admin/integrations/apikey/add/",
    ):
        response = page.goto(base + path)
        assert response is not None
        assert response.status == 200, path

    response = page.goto(f"{base}/no-such-page/")
    assert response is not None
    assert response.status == 404
    assert page.get_by_role("heading", name="Page not found").is_visible()
    # The 404 itself is reported by Chromium as a failed resource load; nothing else may be.
    problems.items = [p for p in problems.items if "status of 404" not in p]
    assert problems.items == []
