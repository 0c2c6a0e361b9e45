"""Forms of the staff coupon pages. They check what was typed; ``services.discounts`` decides
what is allowed (and says why not, on the field it names)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django import forms

from tollgate.billing.discounts import coupon_terms
from tollgate.billing.models import Coupon
from tollgate.catalog.models import Plan
from tollgate.core.errors import TollgateError
from tollgate.core.money import money_from_major_units, validate_currency
from tollgate.web.staff_forms import TokenForm


class RefusalForm(forms.Form):
    def refusal(self, exc: TollgateError) -> None:
        """Show a service's refusal on the field it names, or on the form."""
        field = exc.details.get("field")
        self.add_error(field if field in self.fields else None, exc.message)


def _end_of_day(day: dt.date | None) -> dt.datetime | None:
    """The last moment (UTC) a code or coupon dated ``day`` can be redeemed."""
    if day is None:
        return None
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


class CouponForm(RefusalForm):
    name = forms.CharField(label="Name (shown on invoices)", max_length=100)
    kind = forms.ChoiceField(
        label="Discount",
        choices=[("percent", "A percentage off"), ("amount", "A fixed amount off")],
        widget=forms.RadioSelect,
        initial="percent",
    )
    percent_off = forms.DecimalField(
        label="Percent off",
        required=False,
        min_value=Decimal("0.01"),
        max_value=Decimal(100),
        decimal_places=2,
    )
    amount_off = forms.CharField(
        label="Amount off",
        required=False,
        max_length=20,
        help_text="In the currency below, e.g. 10.00.",
    )
    currency = forms.CharField(
        label="Currency", required=False, max_length=3, help_text="ISO 4217, e.g. USD."
    )
    other_amounts = forms.CharField(
        label="In other currencies",
        required=False,
        max_length=400,
        help_text="Optional, for prices in other currencies: e.g. EUR 9.00, GBP 8.00.",
    )
    duration = forms.ChoiceField(label="For how long", choices=Coupon.Duration.choices)
    duration_periods = forms.IntegerField(
        label="Billing periods",
        required=False,
        min_value=1,
        max_value=120,
        help_text="With “A number of billing periods”.",
    )
    plans = forms.ModelMultipleChoiceField(
        label="Only for these plans",
        queryset=Plan.objects.filter(active=True).order_by("display_order", "name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None chosen: every plan.",
    )
    max_redemptions = forms.IntegerField(label="Redemptions at most", required=False, min_value=1)
    redeem_by = forms.DateField(label="Redeemable until (inclusive, UTC)", required=False)
    first_time_only = forms.BooleanField(label="First-time customers only", required=False)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("kind") == "amount":
            cleaned["percent_off"] = None
            try:
                currency = validate_currency(cleaned.get("currency") or "")
            except ValueError:
                self.add_error("currency", "Give the currency as a 3-letter code, e.g. USD.")
                return cleaned
            try:
                money = money_from_major_units(cleaned.get("amount_off") or "", currency)
            except ValueError as exc:
                self.add_error("amount_off", str(exc))
            else:
                cleaned["amount_minor"] = money.amount
                cleaned["currency"] = money.currency
            cleaned["amounts_off"] = self._other_amounts(cleaned.get("other_amounts") or "")
        elif cleaned.get("kind") == "percent" and cleaned.get("percent_off") is None:
            self.add_error("percent_off", "Give the percentage off.")
        return cleaned

    def _other_amounts(self, text: str) -> dict[str, int]:
        """``EUR 9.00, GBP 8.00`` as minor units per currency (an error on the field otherwise)."""
        amounts: dict[str, int] = {}
        for part in filter(None, (piece.strip() for piece in text.replace("\n", ",").split(","))):
            code, _, major = part.partition(" ")
            try:
                money = money_from_major_units(major.strip(), validate_currency(code.upper()))
            except ValueError:
                self.add_error(
                    "other_amounts",
                    f"Write each as a currency code and an amount, e.g. EUR 9.00 ({part[:20]}?).",
                )
                return {}
            amounts[money.currency] = money.amount
        return amounts

    def service_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        amount = data["kind"] == "amount"
        return {
            "name": data["name"],
            "percent_off": None if amount else data["percent_off"],
            "amount_off": data.get("amount_minor") if amount else None,
            "currency": data.get("currency", "") if amount else "",
            "amounts_off": (data.get("amounts_off") or {}) if amount else {},
            "duration": data["duration"],
            "duration_periods": data.get("duration_periods"),
            "plans": list(data.get("plans") or []),
            "max_redemptions": data.get("max_redemptions"),
            "redeem_by": _end_of_day(data.get("redeem_by")),
            "first_time_only": data.get("first_time_only", False),
        }


class PromotionCodeForm(RefusalForm):
    code = forms.CharField(
        label="Code", max_length=40, help_text="3 to 40 letters, digits, - or _; any case matches."
    )
    max_redemptions = forms.IntegerField(label="Redemptions at most", required=False, min_value=1)
    expires_on = forms.DateField(label="Usable until (inclusive, UTC)", required=False)
    first_time_only = forms.BooleanField(label="First-time customers only", required=False)

    def service_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "code": data["code"],
            "max_redemptions": data.get("max_redemptions"),
            "expires_at": _end_of_day(data.get("expires_on")),
            "first_time_only": data.get("first_time_only", False),
        }


class CouponChoiceField(forms.ModelChoiceField[Coupon]):
    def label_from_instance(self, obj: Coupon) -> str:
        return f"{obj.name}: {coupon_terms(obj)}"


class ApplyCouponForm(TokenForm):
    coupon = CouponChoiceField(
        label="Coupon",
        queryset=Coupon.objects.filter(archived_at__isnull=True).order_by("name"),
        to_field_name="public_id",
        empty_label="Choose a coupon",
    )
