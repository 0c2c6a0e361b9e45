"""Template filters that show the catalog's features and limits the way people read them: by their
names (never their keys), with numbers grouped for the locale and -1 as "Unlimited". The names
come from ``catalog.selectors.catalog_names`` (cached for every process, no query once warm)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.formats import number_format

from tollgate.catalog.models import UNLIMITED
from tollgate.catalog.selectors import catalog_names

register = template.Library()


@register.filter
def label(code: str) -> str:
    """``api_calls_per_month`` -> ``API calls per month`` (the catalog's name for the key)."""
    return catalog_names().name(str(code))


@register.filter
def limit_value(value: int | None, code: str = "") -> str:
    """``2000000`` -> ``2,000,000`` (with the limit's unit, e.g. ``500 GB``); -1 -> ``Unlimited``."""
    if value is None:
        return ""
    unit = catalog_names().key(str(code)).unit if code else ""
    return _limit_text(int(value), unit)


@register.filter
def plan_includes(plan: Any) -> list[str]:
    """What ``plan`` includes, one line each in the catalog's order: its limits
    (``Projects: 25``), then the features it has (``SSO``)."""
    names = catalog_names()
    limits = [f"{key.name}: {_limit_text(value, key.unit)}" for key, value in names.limits_of(plan)]
    return limits + [key.name for key in names.features_of(plan)]


def _limit_text(value: int, unit: str) -> str:
    if value == UNLIMITED:
        return "Unlimited"
    number = number_format(value, force_grouping=True)
    return f"{number} {unit}" if unit else number
