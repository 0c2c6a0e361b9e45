"""Template tags of the staff tables: a sortable column heading, the pager and compact dates."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import template

from tollgate.web.staff_tables import Table

register = template.Library()


@register.inclusion_tag("staff/_sort_heading.html")
def sort_heading(table: Table[Any], key: str, label: str, numeric: bool = False) -> dict[str, Any]:
    """A ``<th>`` whose link sorts ``table`` by ``key`` (and the other way when it already does),
    with ``aria-sort`` on the current column."""
    current = table.sort == key
    return {
        "url": table.sort_url(key),
        "label": label,
        "numeric": numeric,
        "aria_sort": ("ascending" if table.direction == "asc" else "descending") if current else "",
    }


@register.inclusion_tag("staff/_pager.html")
def pager(table: Table[Any], label: str) -> dict[str, Any]:
    """Previous and next links and where this page is, for ``table`` (named ``label``)."""
    page = table.page
    return {
        "page": page,
        "label": label,
        "previous": table.url(page=page.previous_page_number()) if page.has_previous() else "",
        "next": table.url(page=page.next_page_number()) if page.has_next() else "",
    }


@register.filter
def day(moment: dt.datetime | None) -> str:
    """``2026-05-01``: the UTC day, for dates in dense tables (periods, trial ends)."""
    if moment is None:
        return ""
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d}"


@register.filter
def minute(moment: dt.datetime | None) -> str:
    """``2026-05-01 12:00``: the UTC time to the minute, the column heading says UTC."""
    if moment is None:
        return ""
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M}"
