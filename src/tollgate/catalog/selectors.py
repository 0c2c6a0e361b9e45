from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db.models import Prefetch, QuerySet

from tollgate.catalog.models import Metric, Plan, Price

METRICS_CACHE_KEY = "catalog:metrics"
METRICS_CACHE_SECONDS = 300


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


def metric_resets() -> dict[str, str]:
    """Metric code -> ``period`` or ``level`` (cached for every process; dropped after a catalog
    load commits)."""
    cached = cache.get(METRICS_CACHE_KEY)
    if isinstance(cached, dict):
        return cached
    resets = dict(Metric.objects.values_list("code", "reset"))
    cache.set(METRICS_CACHE_KEY, resets, METRICS_CACHE_SECONDS)
    return resets


def catalog_cached_forget(payload: dict[str, Any]) -> None:
    """Outbox handler: drop what is cached from the catalog (idempotent)."""
    cache.delete(METRICS_CACHE_KEY)
