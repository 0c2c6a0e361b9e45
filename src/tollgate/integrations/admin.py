"""API keys in the admin: found and read here, never edited or deleted.

A key is issued through ``integrations.keys.api_key_create`` (the add page), which audits it; its
secret is rendered once, in the response to that request (not as a message: the message storage may
be a cookie), and kept nowhere. Only its hash is stored, and the admin never shows the hash.
Revoking goes through ``api_key_revoke`` (an action on the list).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from tollgate.core import clock
from tollgate.core.errors import ValidationFailed
from tollgate.integrations.keys import (
    NAME_MAX_LENGTH,
    SCOPES,
    api_key_create,
    api_key_revoke,
    api_key_usable,
    rate_limits_check,
)
from tollgate.integrations.models import ApiKey

ADD_TEMPLATE = "staff/api_keys/admin_add.html"
SHOWN_FIELDS = (
    "public_id",
    "name",
    "kind",
    "mode",
    "customer",
    "display_prefix",
    "scopes",
    "rate_limits",
    "created_by",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
    "replaced_by",
)


class ApiKeyAddForm(forms.Form):
    """An operator key: what ``api_key_create`` takes."""

    name = forms.CharField(
        max_length=NAME_MAX_LENGTH, help_text="What uses the key, such as 'billing sync'."
    )
    scopes = forms.MultipleChoiceField(
        choices=[(scope, scope) for scope in SCOPES], widget=forms.CheckboxSelectMultiple
    )
    expires_on = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional: the key stops working at 00:00 UTC on this day.",
    )
    rate_limits = forms.JSONField(
        required=False,
        help_text='Optional, per operation class, e.g. {"check": "6000/minute"}; classes left out '
        "keep the installation's defaults.",
    )

    def clean_rate_limits(self) -> dict[str, str]:
        rates = self.cleaned_data["rate_limits"] or {}
        if not isinstance(rates, dict):
            raise forms.ValidationError('Give an object, such as {"check": "6000/minute"}.')
        try:
            return rate_limits_check(rates)
        except ValidationFailed as exc:
            raise forms.ValidationError(exc.message) from exc

    def expires_at(self) -> dt.datetime | None:
        day: dt.date | None = self.cleaned_data.get("expires_on")
        return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC) if day else None


class RevokedFilter(admin.SimpleListFilter):
    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Revoked"), ("no", "Not revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(revoked_at__isnull=self.value() == "no")
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    list_display = (
        "name",
        "public_id",
        "display_prefix",
        "kind",
        "mode",
        "customer",
        "working",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    list_filter = ("kind", "mode", RevokedFilter)
    search_fields = ("name", "public_id", "lookup")
    list_select_related = ("customer",)
    fields = SHOWN_FIELDS
    readonly_fields = SHOWN_FIELDS
    actions = ["revoke_selected"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.change_apikey")

    @admin.display(boolean=True, description="works now")
    def working(self, key: ApiKey) -> bool:
        return api_key_usable(key, at=clock.now())

    @admin.display(description="prefix")
    def display_prefix(self, key: ApiKey) -> str:
        return key.display_prefix

    @admin.action(description="Revoke selected keys", permissions=["revoke"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(key=key, actor=request.user)
            revoked += 1
        self.message_user(
            request, f"Revoked {revoked} key(s); they no longer work.", messages.SUCCESS
        )

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Issue an operator key; the response shows its secret, once."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ApiKeyAddForm(request.POST if request.method == "POST" else None)
        issued = None
        if form.is_bound and form.is_valid():
            try:
                issued = api_key_create(
                    name=form.cleaned_data["name"],
                    scopes=form.cleaned_data["scopes"],
                    expires_at=form.expires_at(),
                    rate_limits=form.cleaned_data["rate_limits"],
                    actor=request.user,
                )
            except ValidationFailed as exc:
                named = str(exc.details.get("field", ""))
                field = {"expires_at": "expires_on"}.get(named, named)
                form.add_error(field if field in form.fields else None, exc.message)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API key created" if issued else "Add API key",
            "form": form,
            "issued": issued,
            **(extra_context or {}),
        }
        status = 422 if form.is_bound and issued is None else 200
        return TemplateResponse(request, ADD_TEMPLATE, context, status=status)
