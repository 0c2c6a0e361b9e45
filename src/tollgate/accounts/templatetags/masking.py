"""``{% load masking %}``: personal data shown where someone other than its owner may see it."""

from __future__ import annotations

from django import template

from tollgate.core.redaction import mask_email as _mask_email

register = template.Library()


@register.filter
def mask_email(email: str) -> str:
    """``jane.doe@example.com`` -> ``j***@example.com``."""
    return _mask_email(str(email))
