"""Coupons and promotion codes in the admin: created through the services (validated, audited),
never edited afterwards, archived with an action; applied discounts are read-only."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse

from tollgate.billing import discounts, services
from tollgate.billing.models import Coupon, Discount, PromotionCode
from tollgate.core.errors import ValidationFailed


class CreateOnly:
    """Staff add rows through the services and read them afterwards; nothing is edited or
    deleted (a coupon or code is archived instead)."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # Not in the admin's own transaction: the service opens its one durable transaction.
        return self._changeform_view(request, object_id, form_url, extra_context)  # type: ignore[attr-defined]

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


def _adopt(obj: Model, created: Model) -> None:
    """Make the admin's unsaved ``obj`` the row the service created."""
    obj.__dict__.update(created.__dict__)


class CouponForm(forms.ModelForm[Coupon]):
    class Meta:
        model = Coupon
        fields = (
            "name",
            "percent_off",
            "amount_off",
            "currency",
            "amounts_off",
            "duration",
            "duration_periods",
            "plans",
            "max_redemptions",
            "redeem_by",
            "first_time_only",
        )

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean() or {}
        amounts = cleaned.get("amounts_off") or {}
        if not isinstance(amounts, dict):
            self.add_error("amounts_off", 'Give currency codes and amounts: {"EUR": 900}.')
        elif amounts:
            try:
                cleaned["amounts_off"] = discounts.further_amounts_checked(
                    amounts, (cleaned.get("currency") or "").upper()
                )
            except ValidationFailed as exc:
                self.add_error("amounts_off", exc.message)
        return cleaned


@admin.register(Coupon)
class CouponAdmin(CreateOnly, admin.ModelAdmin[Coupon]):
    form = CouponForm
    list_display = (
        "public_id",
        "name",
        "percent_off",
        "amount_off",
        "currency",
        "duration",
        "times_redeemed",
        "max_redemptions",
        "archived_at",
    )
    list_filter = ("duration", "first_time_only")
    search_fields = ("public_id", "name", "promotion_codes__code")
    actions = ["archive"]

    def save_model(
        self, request: HttpRequest, obj: Coupon, form: forms.ModelForm[Any], change: bool
    ) -> None:
        data = form.cleaned_data
        created = services.coupon_create(
            name=data["name"],
            percent_off=data.get("percent_off"),
            amount_off=data.get("amount_off"),
            currency=data.get("currency") or "",
            amounts_off=data.get("amounts_off") or {},
            duration=data["duration"],
            duration_periods=data.get("duration_periods"),
            plans=list(data.get("plans") or []),
            max_redemptions=data.get("max_redemptions"),
            redeem_by=data.get("redeem_by"),
            first_time_only=bool(data.get("first_time_only")),
            actor=request.user,  # type: ignore[arg-type]
        )
        _adopt(obj, created)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """The service set the plans."""

    @admin.action(description="Archive (no new redemptions)")
    def archive(self, request: HttpRequest, queryset: QuerySet[Coupon]) -> None:
        for coupon in queryset.filter(archived_at__isnull=True):
            services.coupon_archive(coupon=coupon, actor=request.user)  # type: ignore[arg-type]


@admin.register(PromotionCode)
class PromotionCodeAdmin(CreateOnly, admin.ModelAdmin[PromotionCode]):
    list_display = (
        "code",
        "coupon",
        "times_redeemed",
        "max_redemptions",
        "expires_at",
        "archived_at",
    )
    search_fields = ("code", "public_id", "coupon__public_id", "coupon__name")
    list_select_related = ("coupon",)
    actions = ["archive"]

    def save_model(
        self, request: HttpRequest, obj: PromotionCode, form: forms.ModelForm[Any], change: bool
    ) -> None:
        data = form.cleaned_data
        created = services.promotion_code_create(
            coupon=data["coupon"],
            code=data["code"],
            max_redemptions=data.get("max_redemptions"),
            expires_at=data.get("expires_at"),
            first_time_only=bool(data.get("first_time_only")),
            actor=request.user,  # type: ignore[arg-type]
        )
        _adopt(obj, created)

    @admin.action(description="Archive (no new redemptions)")
    def archive(self, request: HttpRequest, queryset: QuerySet[PromotionCode]) -> None:
        for promotion in queryset.filter(archived_at__isnull=True):
            services.promotion_code_archive(promotion=promotion, actor=request.user)  # type: ignore[arg-type]


@admin.register(Discount)
class DiscountAdmin(admin.ModelAdmin[Discount]):
    list_display = ("public_id", "subscription", "coupon", "promotion_code", "starts_at", "ends_at")
    search_fields = ("public_id", "subscription__public_id", "customer__public_id")
    list_select_related = ("subscription", "coupon", "promotion_code")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
