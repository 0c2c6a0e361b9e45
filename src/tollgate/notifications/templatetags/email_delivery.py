"""``{{ address|email_undeliverable }}``: whether suppressible email to an address is held back (for
staff pages; one query)."""

from __future__ import annotations

from django import template

from tollgate.notifications.selectors import address_is_suppressed

register = template.Library()


@register.filter
def email_undeliverable(address: str) -> bool:
    return bool(address) and address_is_suppressed(address=address)
