from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from tollgate.catalog.models import Plan, Price


def plans_for_sale() -> QuerySet[Plan]:
    """Active plans of active products, in display order, with their active prices (2 queries)."""
    return (
        Plan.objects.filter(active=True, product__active=True)
        .select_related("product")
        .prefetch_related(
            Prefetch(
                "prices", queryset=Price.objects.filter(active=True).order_by("interval", "amount")
            )
        )
        .order_by("display_order", "id")
    )
