"""Undeliverable addresses in the admin: found by the full address, cleared by staff (audited)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from tollgate.notifications.models import SuppressedAddress
from tollgate.notifications.selectors import address_hash, address_normalize
from tollgate.notifications.services import suppression_clear


@admin.register(SuppressedAddress)
class SuppressedAddressAdmin(admin.ModelAdmin[SuppressedAddress]):
    list_display = ("address_masked", "reason", "esp", "created_at", "cleared_at", "cleared_by")
    list_filter = ("reason", "esp", ("cleared_at", admin.EmptyFieldListFilter))
    search_help_text = "The full email address (addresses are stored hashed)."
    search_fields = ("address_hash",)
    date_hierarchy = "created_at"
    actions = ("clear",)
    readonly_fields = (
        "address_masked",
        "reason",
        "esp",
        "event_id",
        "description",
        "created_at",
        "cleared_at",
        "cleared_by",
    )
    exclude = ("address_hash",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[SuppressedAddress], search_term: str
    ) -> tuple[QuerySet[SuppressedAddress], bool]:
        if not search_term.strip():
            return queryset, False
        return queryset.filter(address_hash=address_hash(address_normalize(search_term))), False

    @admin.action(description="Clear: send email to these addresses again", permissions=["clear"])
    def clear(self, request: HttpRequest, queryset: QuerySet[SuppressedAddress]) -> None:
        cleared = sum(
            suppression_clear(
                suppression=suppression,
                cleared_by=SuppressedAddress.ClearedBy.STAFF,
                actor=request.user,
            )
            for suppression in queryset.filter(cleared_at__isnull=True)
        )
        self.message_user(request, f"{cleared} address(es) cleared.", messages.SUCCESS)

    def has_clear_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("notifications.change_suppressedaddress")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
