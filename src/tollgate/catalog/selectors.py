from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db.models import Prefetch

from tollgate.catalog.models import Feature, Metric, Plan, Price
from tollgate.core.memo import per_request

METRICS_CACHE_KEY = "catalog:metrics"
PLANS_CACHE_KEY = "catalog:plans"
CACHE_SECONDS = 300
NAMES_CACHE_KEY = "catalog:names"
# Changes whenever the catalog does: what others cache from plans (an account's entitlements)
# carries the version it was computed under and is recomputed when it differs.
CATALOG_VERSION_KEY = "catalog:version"


def plans_for_sale() -> list[Plan]:
    """Active plans of active products, in display order, with their product and active prices
    (2 queries, then cached for every process under the catalog's version, so a change shows at
    once even to a reader that loaded the plans just before it)."""
    found = cache.get_many([PLANS_CACHE_KEY, CATALOG_VERSION_KEY])
    cached, version = found.get(PLANS_CACHE_KEY), found.get(CATALOG_VERSION_KEY) or ""
    if isinstance(cached, tuple) and len(cached) == 2 and cached[0] == version:
        return list(cached[1])
    plans = list(
        Plan.objects.filter(active=True, product__active=True)
        .select_related("product")
        .prefetch_related(
            Prefetch(
                "prices", queryset=Price.objects.filter(active=True).order_by("interval", "amount")
            )
        )
        .order_by("display_order", "id")
    )
    cache.set(PLANS_CACHE_KEY, (version, plans), CACHE_SECONDS)
    return plans


def metric_resets() -> dict[str, str]:
    """Metric code -> ``period`` or ``level`` (cached for every process; dropped after a catalog
    load commits)."""
    cached = cache.get(METRICS_CACHE_KEY)
    if isinstance(cached, dict):
        return cached
    resets = dict(Metric.objects.values_list("code", "reset"))
    cache.set(METRICS_CACHE_KEY, resets, CACHE_SECONDS)
    return resets


@dataclass(frozen=True)
class CatalogKey:
    """A feature or limit key as people read it: its name and, for a limit, the unit after the
    number (blank for a plain count)."""

    code: str
    name: str
    unit: str = ""
    order: int = 0


@dataclass(frozen=True)
class CatalogNames:
    """The names of every feature and limit key, and the order the catalog lists them in."""

    features: Mapping[str, CatalogKey]
    metrics: Mapping[str, CatalogKey]

    def key(self, code: str) -> CatalogKey:
        """The limit or feature ``code``; a key the catalog does not name reads as its words."""
        found = self.metrics.get(code) or self.features.get(code)
        return found or CatalogKey(code, code.replace("_", " ").capitalize(), order=1 << 30)

    def name(self, code: str) -> str:
        return self.key(code).name

    def limits_of(self, plan: Plan) -> list[tuple[CatalogKey, int]]:
        """``plan``'s limits in the catalog's order, each with its value (-1: no limit)."""
        keyed = [(self.key(code), value) for code, value in plan.limits.items()]
        return sorted(keyed, key=lambda item: (item[0].order, item[0].code))

    def features_of(self, plan: Plan) -> list[CatalogKey]:
        """The features ``plan`` includes, in the catalog's order."""
        keys = [self.key(code) for code, on in plan.features.items() if on]
        return sorted(keys, key=lambda key: (key.order, key.code))


def catalog_names() -> CatalogNames:
    """Every feature's and limit's name (2 queries, then cached for every process; dropped when
    the catalog changes), read from the shared cache once per request."""
    return per_request(NAMES_CACHE_KEY, _catalog_names)


def _catalog_names() -> CatalogNames:
    cached = cache.get(NAMES_CACHE_KEY)
    if isinstance(cached, CatalogNames):
        return cached
    names = CatalogNames(
        features={
            code: CatalogKey(code, name, order=order)
            for code, name, order in Feature.objects.values_list("code", "name", "display_order")
        },
        metrics={
            code: CatalogKey(code, name, unit, order)
            for code, name, unit, order in Metric.objects.values_list(
                "code", "name", "unit", "display_order"
            )
        },
    )
    cache.set(NAMES_CACHE_KEY, names, CACHE_SECONDS)
    return names


def catalog_cached_forget(payload: dict[str, Any]) -> None:
    """Outbox handler: drop what is cached from the catalog, and move its version on (idempotent
    in effect: a second run only moves the version again)."""
    cache.delete_many([METRICS_CACHE_KEY, NAMES_CACHE_KEY, PLANS_CACHE_KEY])
    cache.set(CATALOG_VERSION_KEY, secrets.token_hex(8), None)
