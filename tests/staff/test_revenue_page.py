"""The staff revenue page: every chart with its table and CSV link, the CSV downloads, staff-only
access and a query budget that does not grow with customers or months."""

from __future__ import annotations

import csv
import io
import re

import pytest

from tests.staff.test_revenue_history import (  # noqa: F401  (fixtures)
    AS_OF,
    JAN,
    start,
    three_months,
)
from tollgate.core import clock

pytestmark = pytest.mark.django_db

CHARTS = ("mrr", "movements", "churn", "retention")


@pytest.mark.usefixtures("three_months")
def test_the_page_draws_every_chart_with_a_table_and_a_csv_link(staff_client):
    with clock.frozen(AS_OF):
        response = staff_client.get("/staff/revenue/?months=3")
    assert response.status_code == 200
    page = response.text
    assert page.count("<svg") == 5  # four charts for USD, then the cancellation reasons
    assert page.count("<table") == 7  # one per chart, and today's two by plan
    svgs = "".join(re.findall(r"<svg.*?</svg>", page, flags=re.S))
    assert "style=" not in svgs
    assert "<script" not in page
    assert svgs.count('role="img"') == 5
    for chart in CHARTS:
        assert f'href="/staff/revenue/{chart}.csv?currency=USD&amp;months=3"' in page
    assert 'href="/staff/revenue/reasons.csv?months=3"' in page
    assert "revenue.css" in page
    # The numbers of the hand-checked scenario, in the tables and the charts' text alternatives.
    assert "Feb 2026" in page
    for shown in ("$96.00", "-$9.00", "90.6%", "77.0%"):
        assert shown in page
    assert "It costs too much" in page
    assert "Today, by plan" in page


def test_the_page_says_so_when_nothing_was_paid(staff_client, catalog):
    response = staff_client.get("/staff/revenue/")
    assert response.status_code == 200
    assert "No subscription paid in these months." in response.text
    assert response.text.count("<svg") == 1  # the cancellation reasons, all zero


@pytest.mark.usefixtures("three_months")
def test_a_csv_download_is_text_csv_with_a_safe_name_and_the_page_numbers(staff_client):
    with clock.frozen(AS_OF):
        response = staff_client.get("/staff/revenue/movements.csv?currency=USD&months=3")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="revenue-movements-USD-2026-03-20.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:4] == ["month", "currency", "new_minor", "new"]
    assert rows[2][:2] == ["2026-02", "USD"]
    assert rows[2][-2:] == ["-900", "'-$9.00"]
    with clock.frozen(AS_OF):
        reasons = staff_client.get("/staff/revenue/reasons.csv?months=3")
    assert reasons["Content-Disposition"] == 'attachment; filename="revenue-reasons-2026-03-20.csv"'
    assert "too_expensive,It costs too much,1" in reasons.content.decode()


@pytest.mark.parametrize(
    "url",
    [
        "/staff/revenue/nope.csv?currency=USD",
        "/staff/revenue/mrr.csv?currency=EUR",
        "/staff/revenue/mrr.csv?currency=%22%0d%0aX",
        "/staff/revenue/mrr.csv",
    ],
)
@pytest.mark.usefixtures("three_months")
def test_an_unknown_chart_or_currency_is_not_found(staff_client, url):
    with clock.frozen(AS_OF):
        assert staff_client.get(url).status_code == 404


@pytest.mark.parametrize("url", ["/staff/revenue/", "/staff/revenue/mrr.csv?currency=USD"])
def test_only_staff_see_revenue(client, member_client, catalog, url):
    anonymous = client.get(url)
    assert anonymous.status_code == 302
    assert "/accounts/login/" in anonymous["Location"]
    assert member_client.get(url).status_code == 404


def test_the_page_reads_in_a_fixed_number_of_queries(
    staff_client,
    start,  # noqa: F811  (the fixture)
    django_assert_max_num_queries,
):
    def count_queries() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with clock.frozen(AS_OF), CaptureQueriesContext(connection) as captured:
            assert staff_client.get("/staff/revenue/?months=36").status_code == 200
        return len(captured.captured_queries)

    start("pro", JAN)
    count_queries()  # the first request of a session also records the session
    few = count_queries()
    for _ in range(5):
        start("pro", JAN)
    assert count_queries() == few
    with clock.frozen(AS_OF), django_assert_max_num_queries(25):
        staff_client.get("/staff/revenue/?months=36")
