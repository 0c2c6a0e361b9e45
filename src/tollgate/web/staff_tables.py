"""Server-side paging and sorting of the staff tables: one helper for every table.

A table reads ``page``, ``sort`` and ``dir`` from the query string (with a prefix when a page holds
several tables, e.g. ``invoices-page``). Only the sort keys a table names are accepted; anything
else falls back to the table's default, so a hand-edited address never reaches the ORM. Links
built by the ``staff_tables`` template tags keep every other parameter of the page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.core.paginator import Page, Paginator
from django.db.models import Model, QuerySet
from django.http import QueryDict

M = TypeVar("M", bound=Model)

PER_PAGE = 25


@dataclass(frozen=True, slots=True)
class Table(Generic[M]):
    prefix: str
    sort: str
    direction: str
    page: Page[M]
    rows: list[M]
    params: QueryDict
    anchor: str = ""

    def name(self, param: str) -> str:
        """The query parameter ``param`` of this table (``page`` -> ``invoices-page``)."""
        return _param(self.prefix, param)

    def url(self, **changes: Any) -> str:
        """``?...`` with this table's ``changes`` applied and every other parameter kept."""
        query = self.params.copy()
        for param, value in changes.items():
            query[self.name(param)] = str(value)
        return f"?{query.urlencode()}{self.anchor}"

    def sort_url(self, key: str) -> str:
        """Sorting by ``key``: ascending first, the other way when it is the current sort; back
        to page one."""
        direction = "desc" if key == self.sort and self.direction == "asc" else "asc"
        query = self.params.copy()
        query.pop(self.name("page"), None)
        query[self.name("sort")] = key
        query[self.name("dir")] = direction
        return f"?{query.urlencode()}{self.anchor}"


def _page_number(raw: str | None) -> int:
    try:
        return max(int(raw or 1), 1)
    except ValueError:
        return 1


def table_page(
    queryset: QuerySet[M],
    *,
    params: QueryDict,
    sorts: Mapping[str, str | None],
    default: str,
    default_dir: str = "desc",
    prefix: str = "",
    per_page: int = PER_PAGE,
    anchor: str = "",
) -> Table[M]:
    """One page of ``queryset`` ordered by a whitelisted sort key.

    ``sorts`` maps the keys a table offers to model fields (``None``: the queryset's own order,
    which the direction does not flip); ``pk`` breaks ties so pages never overlap. ``anchor`` (``#audit``) ends every link, so a reader stays at the table. Two queries: a COUNT and the page (a page past the end shows the last page).
    """

    sort, direction = _chosen_sort(params, sorts, default, default_dir, prefix)
    field = sorts[sort]
    if field is not None:
        ascending = direction == "asc"
        queryset = queryset.order_by(
            field if ascending else f"-{field}", "pk" if ascending else "-pk"
        )
    return _paged(queryset, params, sort, direction, prefix, per_page, anchor)


def list_page(
    items: Sequence[Mapping[str, Any]],
    *,
    params: QueryDict,
    sorts: Mapping[str, str | None],
    default: str,
    default_dir: str = "asc",
    prefix: str = "",
    per_page: int = PER_PAGE,
    anchor: str = "",
) -> Table[Any]:
    """:func:`table_page` for rows kept as a list of mappings (a reconciliation run's findings):
    ``sorts`` maps each key to the row's key it sorts by (``None``: the list's own order)."""
    sort, direction = _chosen_sort(params, sorts, default, default_dir, prefix)
    key = sorts[sort]
    rows = list(items)
    if key is not None:
        rows.sort(key=lambda row: str(row.get(key) or ""), reverse=direction == "desc")
    return _paged(rows, params, sort, direction, prefix, per_page, anchor)


def _chosen_sort(
    params: QueryDict,
    sorts: Mapping[str, str | None],
    default: str,
    default_dir: str,
    prefix: str,
) -> tuple[str, str]:
    """The sort key and direction asked for, or the table's defaults for anything else."""
    sort = params.get(_param(prefix, "sort"), default)
    if sort not in sorts:
        sort = default
    direction = params.get(_param(prefix, "dir"), default_dir)
    if direction not in ("asc", "desc"):
        direction = default_dir
    return sort, direction


def _param(prefix: str, param: str) -> str:
    return f"{prefix}-{param}" if prefix else param


def _paged(
    rows: Any,
    params: QueryDict,
    sort: str,
    direction: str,
    prefix: str,
    per_page: int,
    anchor: str,
) -> Table[Any]:
    page = Paginator(rows, per_page).get_page(_page_number(params.get(_param(prefix, "page"))))
    return Table(
        prefix=prefix,
        sort=sort,
        direction=direction,
        page=page,
        rows=list(page.object_list),
        params=params,
        anchor=anchor,
    )
