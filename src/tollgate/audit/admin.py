from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from tollgate.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
    """Read-only: staff can search and read the trail, never change it."""

    list_display = ("created_at", "action", "actor_repr", "target_type", "target_id", "ip")
    list_filter = ("action", "target_type")
    search_fields = ("public_id", "actor_repr", "target_id", "request_id", "action")
    date_hierarchy = "created_at"
    list_select_related = ("actor",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
