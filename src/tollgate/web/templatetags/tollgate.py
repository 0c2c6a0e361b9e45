from django import template

register = template.Library()


@register.filter
def label(code: str) -> str:
    """``api_calls_per_month`` -> ``Api calls per month``."""
    return str(code).replace("_", " ").capitalize()
