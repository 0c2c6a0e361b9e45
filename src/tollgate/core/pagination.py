"""Cursor pagination for API lists: newest first, ``limit`` items a page, the next page named by
the last item's public id (``starting_after``). Stable under inserts: a new item never shifts a
page the caller is reading, unlike offsets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from django.db.models import Model, Q, QuerySet

from tollgate.core.errors import ValidationFailed

M = TypeVar("M", bound=Model)

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Page(Generic[M]):
    items: list[M]
    has_more: bool

    @property
    def next_cursor(self) -> str | None:
        return getattr(self.items[-1], "public_id", None) if self.has_more else None


def paginate(
    queryset: QuerySet[M], *, limit: int = DEFAULT_LIMIT, starting_after: str | None = None
) -> Page[M]:
    """One page of ``queryset`` (a model with ``public_id`` and ``created_at``), newest first,
    after the item ``starting_after`` (which must be in ``queryset``)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(
            f"limit is 1 to {MAX_LIMIT}.", details={"field": "limit", "max": MAX_LIMIT}
        )
    ordered = queryset.order_by("-created_at", "-pk")
    if starting_after is not None:
        cursor = (
            queryset.filter(public_id=starting_after[:64]).values_list("created_at", "pk").first()
        )
        if cursor is None:
            raise ValidationFailed(
                "starting_after names no item of this list.",
                details={"field": "starting_after"},
            )
        created_at, pk = cursor
        ordered = ordered.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk))
    items = list(ordered[: limit + 1])
    return Page(items=items[:limit], has_more=len(items) > limit)
