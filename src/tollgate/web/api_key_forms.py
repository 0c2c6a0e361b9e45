"""Forms of the API key pages (the staff console and the customer's account), and the state a key
is shown in. The forms check what was typed; ``integrations.keys`` decides what is allowed, and a
refusal from it is put back on the field it concerns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from django import forms
from django.conf import settings

from tollgate.catalog.services import API_OPERATION_CLASSES
from tollgate.core import clock
from tollgate.core.errors import ValidationFailed
from tollgate.integrations.keys import NAME_MAX_LENGTH, rate_limits_check
from tollgate.integrations.models import ApiKey

SCOPE_LABELS = {
    "entitlements:read": "read entitlements (what a plan includes)",
    "usage:write": "report usage",
    "customers:write": "create and update customers",
    "billing:read": "read subscriptions and invoices",
    "webhooks:manage": "manage webhook endpoints",
}
# The longest overlap the rotation service accepts (30 days).
OVERLAP_MAX_HOURS = 30 * 24
# A working key that stops within this long is shown as expiring.
EXPIRING_WITHIN = dt.timedelta(days=7)


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=NAME_MAX_LENGTH,
        help_text="What uses the key, such as 'billing sync' or 'staging server'.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    scopes = forms.MultipleChoiceField(
        label="Scopes",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one scope."},
    )
    expires_on = forms.DateField(
        label="Expires on (optional)",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The key stops working at 00:00 UTC on this day. Leave empty for a key that "
        "works until it is revoked.",
    )

    def __init__(self, *args: Any, scopes: Sequence[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        scope_field = cast(forms.MultipleChoiceField, self.fields["scopes"])
        scope_field.choices = [
            (scope, f"{scope}: {SCOPE_LABELS[scope]}" if scope in SCOPE_LABELS else scope)
            for scope in scopes
        ]

    def clean_expires_on(self) -> dt.date | None:
        day: dt.date | None = self.cleaned_data["expires_on"]
        if day is not None and day <= clock.now().astimezone(dt.UTC).date():
            raise forms.ValidationError("Choose a day after today.", code="past")
        return day

    def expires_at(self) -> dt.datetime | None:
        day: dt.date | None = self.cleaned_data.get("expires_on")
        return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC) if day else None

    def refusal(self, exc: ValidationFailed) -> None:
        """Show the service's refusal on the field it names (or on the form)."""
        named = str(exc.details.get("field", ""))
        field = {"expires_at": "expires_on"}.get(named, named)
        self.add_error(field if field in self.fields else None, exc.message)


def _rate_field(name: str) -> str:
    return f"rate_{name}"


class OperatorKeyCreateForm(ApiKeyCreateForm):
    """An operator key, with optional rates per operation class (the installation's own
    defaults apply to every class left empty)."""

    def __init__(self, *args: Any, scopes: Sequence[str], **kwargs: Any) -> None:
        super().__init__(*args, scopes=scopes, **kwargs)
        for name in API_OPERATION_CLASSES:
            self.fields[_rate_field(name)] = forms.CharField(
                label=f"Rate limit: {name} (optional)",
                required=False,
                max_length=32,
                widget=forms.TextInput(attrs={"placeholder": "600/minute", "autocomplete": "off"}),
                help_text=(
                    "For operations without a rate of their own."
                    if name == "default"
                    else f"For {name} operations."
                ),
            )

    def rate_fields(self) -> list[forms.BoundField]:
        return [self[_rate_field(name)] for name in API_OPERATION_CLASSES]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in API_OPERATION_CLASSES:
            rate = (cleaned.get(_rate_field(name)) or "").strip()
            cleaned[_rate_field(name)] = rate
            if rate:
                try:
                    rate_limits_check({name: rate})
                except ValidationFailed as exc:
                    self.add_error(_rate_field(name), exc.message)
        return cleaned

    def rate_limits(self) -> dict[str, str]:
        return {
            name: self.cleaned_data[_rate_field(name)]
            for name in API_OPERATION_CLASSES
            if self.cleaned_data.get(_rate_field(name))
        }

    def refusal(self, exc: ValidationFailed) -> None:
        if exc.details.get("field") == "rate_limits" and exc.details.get("name"):
            field = _rate_field(str(exc.details["name"]))
            self.add_error(field if field in self.fields else None, exc.message)
            return
        super().refusal(exc)


class RotateForm(forms.Form):
    overlap_hours = forms.IntegerField(
        label="Hours the old key keeps working",
        min_value=0,
        max_value=OVERLAP_MAX_HOURS,
        help_text=f"0 to {OVERLAP_MAX_HOURS}: time to put the new key in place; the old key "
        "stops after that.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["overlap_hours"].initial = settings.API_KEY_ROTATION_OVERLAP_HOURS

    def overlap(self) -> dt.timedelta:
        return dt.timedelta(hours=self.cleaned_data["overlap_hours"])

    def refusal(self, exc: ValidationFailed) -> None:
        field = "overlap_hours" if exc.details.get("field") == "overlap" else None
        self.add_error(field, exc.message)


# --- How a key is shown ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KeyRow:
    """A key as the lists show it: its state in words and the badge tone for it."""

    key: ApiKey
    state: str
    tone: str

    @property
    def working(self) -> bool:
        return self.state in ("working", "expiring")


_TONES = {
    "working": "status-ok",
    "expiring": "status-warn",
    "revoked": "status-muted",
    "expired": "status-muted",
}


def key_state(key: ApiKey, *, at: dt.datetime) -> str:
    """``working``; ``expiring`` (rotated, or stops within a week); ``revoked``; ``expired``."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= at:
        return "expired"
    if key.replaced_by_id is not None or (
        key.expires_at is not None and key.expires_at - at <= EXPIRING_WITHIN
    ):
        return "expiring"
    return "working"


def key_rows(keys: Iterable[ApiKey]) -> list[KeyRow]:
    now = clock.now()
    rows = []
    for key in keys:
        state = key_state(key, at=now)
        rows.append(KeyRow(key=key, state=state, tone=_TONES[state]))
    return rows
