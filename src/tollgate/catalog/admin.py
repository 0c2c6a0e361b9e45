from __future__ import annotations

from typing import Any, TypeVar

from django import forms
from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from tollgate.catalog.models import Feature, Metric, Plan, Price, Product
from tollgate.catalog.services import catalog_changed_announce, price_charge_problem

PRICE_TERMS = ("amount", "currency", "interval", "interval_count", "per_seat")
_Model = TypeVar("_Model", bound=Model)


class PriceForm(forms.ModelForm[Price]):
    """A saved price's terms are fixed: customers may be paying it. To change what a plan costs, add
    a new price and deactivate the old one; subscriptions keep theirs until they are moved."""

    class Meta:
        model = Price
        fields = ("amount", "currency", "interval", "interval_count", "per_seat", "active")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            for name in PRICE_TERMS:
                self.fields[name].disabled = True  # the posted value is ignored

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        amount, currency = self.cleaned_data.get("amount"), self.cleaned_data.get("currency")
        if self.instance.pk is None and amount is not None and currency:
            try:
                problem = price_charge_problem(amount=amount, currency=currency)
            except ValueError:
                problem = ""  # not a currency code: the model's own check says so
            if problem:
                self.add_error("amount", problem[0].upper() + problem[1:])
        return cleaned


class PriceInline(admin.TabularInline[Price, Plan]):
    model = Price
    form = PriceForm
    extra = 0
    fields = ("public_id", "amount", "currency", "interval", "interval_count", "per_seat", "active")
    readonly_fields = ("public_id",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin[Product]):
    list_display = ("name", "code", "public_id", "active")
    search_fields = ("name", "code", "public_id")


class CatalogChangeAdmin(admin.ModelAdmin[_Model]):
    """Saving or deleting here names new feature and limit keys and, once the admin's transaction
    commits, drops what every process caches from the catalog (names, metric resets)."""

    def save_model(self, request: HttpRequest, obj: _Model, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        catalog_changed_announce()

    def delete_model(self, request: HttpRequest, obj: _Model) -> None:
        super().delete_model(request, obj)
        catalog_changed_announce()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[_Model]) -> None:
        super().delete_queryset(request, queryset)
        catalog_changed_announce()


class CatalogKeyAdmin(CatalogChangeAdmin[_Model]):
    """Plans refer to a feature or limit by its code: once saved, the code stays."""

    search_fields = ("name", "code")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("code",) if obj is not None else ()


@admin.register(Feature)
class FeatureAdmin(CatalogKeyAdmin[Feature]):
    list_display = ("name", "code", "display_order")
    fields = ("code", "name", "description", "display_order")


@admin.register(Metric)
class MetricAdmin(CatalogKeyAdmin[Metric]):
    list_display = ("name", "code", "unit", "reset", "display_order")
    fields = ("code", "name", "unit", "reset", "display_order")


@admin.register(Plan)
class PlanAdmin(CatalogChangeAdmin[Plan]):
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
