"""Template filters of the staff pages (amounts use ``money`` from the ``billing`` library)."""

from __future__ import annotations

import datetime as dt

from django import template

register = template.Library()


@register.filter
def utc(moment: dt.datetime | None) -> str:
    """``2026-05-01 12:00 UTC``: staff pages show every time in UTC, to the minute."""
    if moment is None:
        return ""
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


_STATUS_TONES = {
    "ok": {"active", "paid", "succeeded", "processed", "completed", "trialing"},
    "warn": {"past_due", "open", "pending", "requires_action", "unknown", "received", "running"},
    "bad": {"unpaid", "failed", "uncollectible", "incomplete", "incomplete_expired"},
}


@register.filter
def status_tone(status: str) -> str:
    """The badge class of a status: ``status-ok``, ``status-warn``, ``status-bad`` or muted."""
    for tone, statuses in _STATUS_TONES.items():
        if status in statuses:
            return f"status-{tone}"
    return "status-muted"


@register.filter
def get_count(counts: dict[str, int], name: str) -> int:
    """``{{ counts|get_count:"failed" }}``: a count by name, zero when absent."""
    return counts.get(name, 0)
