"""The stored idempotent requests in the admin: read-only, for finding and reading.

The outbox's admin lives in :mod:`tollgate.ops.admin`, next to the audited retry it offers (core
imports no app above it).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from tollgate.core.models import IdempotencyRecord


class ReadOnlyAdmin:
    """Admin pages that show rows but never add, change or delete them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin, admin.ModelAdmin[IdempotencyRecord]):
    list_display = ("scope", "operation", "key", "state", "created_at", "completed_at")
    list_filter = ("state", "operation")
    search_fields = ("scope", "key", "operation")
    exclude = ("response", "lease_token")
    date_hierarchy = "created_at"
