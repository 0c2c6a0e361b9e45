"""The outbox in the admin: read-only, for finding and reading.

A failed outbox message can be sent again (the "retry" action: pending and due now, audited).
Payloads are not shown: an email's body or a webhook's data may hold personal data.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from tollgate.core.admin import ReadOnlyAdmin
from tollgate.core.models import OutboxMessage
from tollgate.ops.services import outbox_message_retry


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin, admin.ModelAdmin[OutboxMessage]):
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
