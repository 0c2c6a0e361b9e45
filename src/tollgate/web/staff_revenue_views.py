"""The staff revenue page: MRR month by month and its movements, churn, net revenue retention and
the cancellation reasons, each as a server-rendered SVG chart with a table of the same numbers and a
CSV download. The figures come from ``billing.revenue`` (and today's snapshot from
``billing.reports``); this module only lays the charts out."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from tollgate.audit.services import audit_access_record
from tollgate.billing import reports, revenue
from tollgate.billing.revenue import MonthFigures, RevenueHistory, percent_text
from tollgate.web.staff_views import staff_required

CHART_WIDTH = 640
CHART_HEIGHT = 220
# Room for text as large as phones draw it (26 units: a chart drawn half size still reads at 13 px).
AXIS_ROOM = 34  # below the plot: the month labels
SCALE_ROOM = 34  # above the plot: the tallest column's value, as a scale
MONTH_LABELS = 6  # at most this many month labels (every other month, or every third, ...)
ROW_HEIGHT = 60  # a bar chart's row: its label above its bar
VALUE_ROOM = 100  # right of the longest bar: its value
LABEL_HALF = 46  # half a month label ("Dec 26") at that size: the first and last stay inside


# --- Chart layout ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Column:
    series: str  # a CSS class: the colour of its series
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class AxisLabel:
    x: int
    text: str


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    css: str
    values: Sequence[int | None]
    shown: Sequence[str]


@dataclass(frozen=True, slots=True)
class ColumnChart:
    """Columns per month, one per series side by side, up from (or down from) the zero line."""

    title: str
    summary: str
    width: int
    height: int
    zero_y: int
    columns: list[Column]
    labels: list[AxisLabel]
    legend: list[Series]
    scale: str  # the value of the tallest (or deepest) column, "" when all are zero


def column_chart(title: str, months: Sequence[str], series: Sequence[Series]) -> ColumnChart:
    """Lay out ``series`` (values in any unit; None draws nothing) over ``months``, scaled so the
    tallest column and the deepest negative one both fit."""
    plot = CHART_HEIGHT - AXIS_ROOM - SCALE_ROOM
    values = [value or 0 for line in series for value in line.values]
    top, bottom = max([0, *values]), min([0, *values])
    span = (top - bottom) or 1
    zero_y = SCALE_ROOM + top * plot // span
    group = (CHART_WIDTH - 8) // max(len(months), 1)
    bar = max((group - 8) // max(len(series), 1), 1)
    columns = []
    for index in range(len(months)):
        for offset, line in enumerate(series):
            value = line.values[index] or 0
            size = abs(value) * plot // span
            columns.append(
                Column(
                    series=line.css,
                    x=4 + index * group + 4 + offset * bar,
                    y=zero_y - size if value > 0 else zero_y,
                    width=max(bar - 1, 1),
                    height=size,
                )
            )
    every = max(-(-len(months) // MONTH_LABELS), 1)  # rounded up: at most MONTH_LABELS labels
    labels = [
        AxisLabel(
            x=min(max(4 + index * group + group // 2, LABEL_HALF), CHART_WIDTH - LABEL_HALF),
            text=text,
        )
        for index, text in enumerate(months)
        if (len(months) - 1 - index) % every == 0  # the current month always has its label
    ]
    largest = max(
        (
            (abs(value or 0), line.shown[index])
            for line in series
            for index, value in enumerate(line.values)
        ),
        default=(0, ""),
    )
    summary = "; ".join(
        f"{month}: " + ", ".join(f"{line.name} {line.shown[index]}" for line in series)
        for index, month in enumerate(months)
    )
    return ColumnChart(
        title=title,
        summary=summary or "no data",
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        zero_y=zero_y,
        columns=columns,
        labels=labels,
        legend=list(series),
        scale=largest[1] if largest[0] else "",
    )


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    shown: str
    y: int  # the top of its row: the label, then the bar
    width: int


@dataclass(frozen=True, slots=True)
class BarChart:
    title: str
    summary: str
    width: int
    height: int
    bars: list[Bar]


def bar_chart(title: str, rows: Sequence[tuple[str, int, str]]) -> BarChart:
    """One horizontal bar per (label, value, value as shown), scaled to the largest value, its
    label above it (so a label keeps the chart's whole width however large phones draw it)."""
    largest = max((value for _, value, _ in rows), default=0) or 1
    room = CHART_WIDTH - VALUE_ROOM
    bars = [
        Bar(
            label=label,
            shown=shown,
            y=index * ROW_HEIGHT,
            width=max(value * room // largest, 1 if value else 0),
        )
        for index, (label, value, shown) in enumerate(rows)
    ]
    return BarChart(
        title=title,
        summary="; ".join(f"{label} {shown}" for label, _, shown in rows) or "no data",
        width=CHART_WIDTH,
        height=max(len(rows), 1) * ROW_HEIGHT,
        bars=bars,
    )


# --- The page's charts -----------------------------------------------------------------------------------
def _money(months: Sequence[MonthFigures], name: str, field: str, css: str) -> Series:
    amounts = [getattr(month, field) for month in months]
    return Series(
        name=name,
        css=css,
        values=amounts,
        shown=[month.money(amount).format() for month, amount in zip(months, amounts, strict=True)],
    )


def _lost(months: Sequence[MonthFigures], name: str, field: str, css: str) -> Series:
    """A movement that takes MRR away: drawn below the zero line, shown as a negative amount."""
    amounts = [-getattr(month, field) for month in months]
    return Series(
        name=name,
        css=css,
        values=amounts,
        shown=[month.money(amount).format() for month, amount in zip(months, amounts, strict=True)],
    )


def _rate(months: Sequence[MonthFigures], name: str, field: str, css: str) -> Series:
    tenths = [getattr(month, field) for month in months]
    return Series(name=name, css=css, values=tenths, shown=[percent_text(t) for t in tenths])


@dataclass(frozen=True, slots=True)
class CurrencySection:
    currency: str
    months: list[MonthFigures]
    mrr: ColumnChart
    movements: ColumnChart
    churn: ColumnChart
    retention: ColumnChart


def currency_section(currency: str, months: list[MonthFigures]) -> CurrencySection:
    labels = [f"{month.month:%b %y}" for month in months]
    return CurrencySection(
        currency=currency,
        months=months,
        mrr=column_chart(
            f"MRR at each month-end, {currency}",
            labels,
            [_money(months, "MRR", "mrr", "series-mrr")],
        ),
        movements=column_chart(
            f"MRR movements per month, {currency}",
            labels,
            [
                _money(months, "New", "new", "series-new"),
                _money(months, "Expansion", "expansion", "series-expansion"),
                _lost(months, "Contraction", "contraction", "series-contraction"),
                _lost(months, "Churned", "churned", "series-churned"),
            ],
        ),
        churn=column_chart(
            f"Churn per month, {currency}",
            labels,
            [
                _rate(months, "Customer churn", "customer_churn", "series-customers"),
                _rate(months, "Revenue churn", "revenue_churn", "series-churned"),
            ],
        ),
        retention=column_chart(
            f"Net revenue retention per month, {currency}",
            labels,
            [_rate(months, "Net revenue retention", "net_retention", "series-retention")],
        ),
    )


def reasons_chart(history: RevenueHistory) -> BarChart:
    return bar_chart(
        "Cancellations by the reason given",
        [(line.label, line.count, str(line.count)) for line in history.reasons],
    )


# --- Views -----------------------------------------------------------------------------------------------
def _months(request: HttpRequest) -> int:
    text = request.GET.get("months", "")
    return int(text) if text.isdigit() and len(text) < 4 else revenue.DEFAULT_MONTHS


@require_safe
@staff_required
def revenue_page(request: HttpRequest) -> HttpResponse:
    history = revenue.revenue_history(months=_months(request))
    return render(
        request,
        "staff/revenue.html",
        {
            "history": history,
            "overview": reports.revenue_overview(now=history.as_of),
            "window_days": reports.REPORT_WINDOW.days,
            "sections": [
                currency_section(currency, months)
                for currency, months in sorted(history.by_currency.items())
            ],
            "reasons": reasons_chart(history),
            "month_choices": (3, 6, 12, 24, 36),
        },
    )


@require_safe
@staff_required
def revenue_csv(request: HttpRequest, chart: str) -> HttpResponse:
    """One chart's numbers as CSV: ``?currency=`` (one the page shows; not for the reasons) and
    ``?months=`` as on the page."""
    if chart not in revenue.CSV_CHARTS:
        raise Http404
    history = revenue.revenue_history(months=_months(request))
    currency = request.GET.get("currency", "")
    if chart != "reasons" and currency not in history.by_currency:
        raise Http404
    header, rows = revenue.csv_table(history=history, chart=chart, currency=currency)
    audit_access_record(
        viewer=request.user,
        action="staff.viewed_export",
        details={"export": f"revenue_{chart}", "currency": currency, "months": _months(request)},
    )
    # The name is built only from checked values: a known chart, a listed currency, a date.
    name = "-".join(
        part for part in ("revenue", chart, currency if chart != "reasons" else "") if part
    )
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}-{history.as_of:%Y-%m-%d}.csv"'
    writer = csv.writer(response)
    writer.writerow(header)
    writer.writerows(rows)
    return response
