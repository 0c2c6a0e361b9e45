"""Billing in the admin: read-only. Money moves only through the services (refunds, plan changes),
which lock, audit and post to the ledger; the admin is for finding and reading."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from tollgate.billing.models import (
    Customer,
    Dispute,
    InboundEvent,
    Invoice,
    InvoiceLine,
    LedgerEntry,
    LedgerTransaction,
    PaymentAttempt,
    PaymentMethod,
    ReconciliationRun,
    Refund,
    Subscription,
)
from tollgate.billing.services.disputes import dispute_acknowledge
from tollgate.core.admin import ReadOnlyAdmin


class InvoiceLineInline(ReadOnlyAdmin, admin.TabularInline[InvoiceLine, Invoice]):
    model = InvoiceLine
    fields = ("kind", "description", "amount", "seats", "period_start", "period_end")
    extra = 0


class LedgerEntryInline(ReadOnlyAdmin, admin.TabularInline[LedgerEntry, LedgerTransaction]):
    model = LedgerEntry
    fields = ("account", "amount", "currency")
    extra = 0


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdmin, admin.ModelAdmin[Customer]):
    list_display = ("public_id", "email", "invoice_prefix", "gateway", "created_at")
    search_fields = ("public_id", "email", "invoice_prefix", "gateway_reference")
    exclude = ("user",)


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ReadOnlyAdmin, admin.ModelAdmin[PaymentMethod]):
    list_display = (
        "public_id",
        "customer",
        "brand",
        "last4",
        "exp_month",
        "exp_year",
        "is_default",
    )
    search_fields = ("public_id", "customer__public_id", "last4")
    list_select_related = ("customer",)


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin, admin.ModelAdmin[Subscription]):
    list_display = ("public_id", "customer", "price", "seats", "status", "current_period_end")
    list_filter = ("status", "cancel_at_period_end")
    search_fields = ("public_id", "customer__public_id", "customer__email")
    list_select_related = ("customer", "price__plan")


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin, admin.ModelAdmin[Invoice]):
    list_display = (
        "number",
        "public_id",
        "customer",
        "status",
        "total",
        "currency",
        "finalized_at",
    )
    list_filter = ("status", "billing_reason")
    search_fields = ("number", "public_id", "customer__public_id", "customer__email")
    list_select_related = ("customer",)
    inlines = [InvoiceLineInline]


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnlyAdmin, admin.ModelAdmin[PaymentAttempt]):
    list_display = ("public_id", "invoice", "attempt_number", "status", "amount", "decline_code")
    list_filter = ("status", "decline_kind", "off_session")
    search_fields = ("public_id", "invoice__number", "gateway_reference", "idempotency_key")
    list_select_related = ("invoice",)


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin, admin.ModelAdmin[Refund]):
    list_display = ("public_id", "payment", "amount", "currency", "status", "reason", "created_at")
    list_filter = ("status", "reason")
    search_fields = ("public_id", "payment__public_id", "gateway_reference")
    list_select_related = ("payment",)


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin, admin.ModelAdmin[LedgerTransaction]):
    list_display = ("public_id", "kind", "customer", "invoice", "occurred_at")
    list_filter = ("kind",)
    search_fields = ("public_id", "invoice__number", "customer__public_id")
    list_select_related = ("customer", "invoice")
    inlines = [LedgerEntryInline]


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin, admin.ModelAdmin[ReconciliationRun]):
    """The stored reports of reconciliation with the gateway: what was healed, what disagrees."""

    list_display = (
        "public_id",
        "gateway",
        "window_start",
        "window_end",
        "status",
        "checked_count",
        "healed_count",
        "mismatched_count",
        "unresolved_count",
        "started_at",
    )
    list_filter = ("status", "gateway")
    search_fields = ("public_id",)
    exclude = ("actor",)


@admin.register(InboundEvent)
class InboundEventAdmin(ReadOnlyAdmin, admin.ModelAdmin[InboundEvent]):
    """Events received from the gateways: what arrived, whether it was processed, and the error
    kept when processing failed."""

    list_display = ("event_id", "gateway", "type", "status", "attempts", "received_at")
    list_filter = ("status", "gateway", "type")
    search_fields = ("event_id", "type")
    date_hierarchy = "received_at"


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin, admin.ModelAdmin[Dispute]):
    """Chargebacks reported by the gateway, those needing attention first. Evidence is submitted on
    the gateway's dashboard before the due date; "Mark as seen" clears the flag (audited)."""

    list_display = (
        "public_id",
        "needs_attention",
        "status",
        "payment",
        "amount",
        "currency",
        "reason",
        "evidence_due_by",
        "opened_at",
    )
    list_filter = ("needs_attention", "status", "gateway")
    search_fields = ("public_id", "gateway_reference", "payment__public_id")
    list_select_related = ("payment",)
    ordering = ("-needs_attention", "-opened_at")
    actions = ["mark_seen"]

    @admin.action(description="Mark as seen")
    def mark_seen(self, request: HttpRequest, queryset: QuerySet[Dispute]) -> None:
        for dispute in queryset.filter(needs_attention=True):
            dispute_acknowledge(dispute=dispute, actor=request.user)  # type: ignore[arg-type]


from tollgate.billing import admin_discounts  # noqa: E402, F401  (registers coupons and codes)
