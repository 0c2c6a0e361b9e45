from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from tollgate.catalog.models import Plan, Price, Product

PRICE_TERMS = ("amount", "currency", "interval", "interval_count")


class PriceForm(forms.ModelForm[Price]):
    """A saved price's terms are fixed: customers may be paying it. To change what a plan costs, add
    a new price and deactivate the old one; subscriptions keep theirs until they are moved."""

    class Meta:
        model = Price
        fields = ("amount", "currency", "interval", "interval_count", "active")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            for name in PRICE_TERMS:
                self.fields[name].disabled = True  # the posted value is ignored


class PriceInline(admin.TabularInline[Price, Plan]):
    model = Price
    form = PriceForm
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
    fields = (
        "product",
        "code",
        "name",
        "description",
        "features",
        "limits",
        "trial_days",
        "trial_requires_card",
        "trial_end_without_card",
        "display_order",
        "active",
    )
    list_filter = ("product", "active")
    search_fields = ("name", "code", "public_id")
    inlines = [PriceInline]
