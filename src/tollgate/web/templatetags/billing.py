from __future__ import annotations

from django import template

from tollgate.core.money import Money

register = template.Library()


@register.filter
def money(amount: int | None, currency: str) -> str:
    """``{{ invoice.total|money:invoice.currency }}`` -> ``$29.00``."""
    if amount is None:
        return ""
    return Money(int(amount), currency).format()


@register.filter
def per_interval(price: object) -> str:
    """``month``, ``year`` or ``3 months`` for a catalog price."""
    count = getattr(price, "interval_count", 1)
    interval = str(getattr(price, "interval", ""))
    return f"{count} {interval}s" if count > 1 else interval
