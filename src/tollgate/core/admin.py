"""The outbox and the stored idempotent requests in the admin: read-only, for finding and reading.

A failed outbox message can be sent again (the "retry" action: pending and due now, audited).
Payloads are not shown: an email's body or a webhook's data may hold personal data.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from tollgate.core.models import IdempotencyRecord, OutboxMessage
from tollgate.ops.services import outbox_message_retry


class _ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(_ReadOnly, admin.ModelAdmin[OutboxMessage]):
    list_display = ("kind", "dedupe_key", "status", "attempts", "available_at", "created_at")
    list_filter = ("status", "kind")
    search_fields = ("dedupe_key", "kind")
    exclude = ("payload",)
    date_hierarchy = "created_at"
    actions = ["retry"]

    @admin.action(description="Retry failed messages (pending, due now)", permissions=["view"])
    def retry(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        failed = queryset.filter(status=OutboxMessage.Status.FAILED)
        retried = sum(
            outbox_message_retry(message=message, actor=request.user) for message in failed
        )
        skipped = queryset.count() - retried
        self.message_user(
            request,
            f"{retried} message(s) will be delivered again"
            + (f"; {skipped} not failed, left as they were." if skipped else "."),
            messages.SUCCESS if retried else messages.WARNING,
        )


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(_ReadOnly, admin.ModelAdmin[IdempotencyRecord]):
    list_display = ("scope", "operation", "key", "state", "created_at", "completed_at")
    list_filter = ("state", "operation")
    search_fields = ("scope", "key", "operation")
    exclude = ("response", "lease_token")
    date_hierarchy = "created_at"
