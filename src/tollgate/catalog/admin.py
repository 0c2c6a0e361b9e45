from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from tollgate.catalog.models import Plan, Price, Product


class PriceInline(admin.TabularInline[Price, Plan]):
    model = Price
    extra = 0
    fields = ("public_id", "amount", "currency", "interval", "interval_count", "active")
    readonly_fields = ("public_id",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin[Product]):
    list_display = ("name", "code", "public_id", "active")
    search_fields = ("name", "code", "public_id")


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin[Plan]):
    list_display = ("name", "code", "product", "trial_days", "display_order", "active")
    list_filter = ("product", "active")
    search_fields = ("name", "code", "public_id")
    inlines = [PriceInline]
