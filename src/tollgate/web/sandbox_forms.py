"""The sandbox's hosted card form: what a processor's card page checks before it saves a card.

The number and the security code are never sent back to the browser (a refused form asks for them
again) and never leave this form except to the sandbox's own check, which keeps only the last four
digits. Error messages never quote what was typed.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables

from tollgate.billing.gateways.sandbox.adapter import luhn_valid
from tollgate.core import clock

_SEPARATORS = re.compile(r"[ -]")
_DIGITS = re.compile(r"[0-9]+")
_EXPIRY = re.compile(r"(0?[1-9]|1[0-2])\s*/\s*([0-9]{2}|[0-9]{4})")
_CVC = re.compile(r"[0-9]{3,4}")
# Cards are issued for at most about 20 years; a later date is a typing mistake.
_MAX_YEARS_AHEAD = 20


class UnrenderedTextInput(forms.TextInput):
    """A text box that never puts its value back into the page (card number, security code)."""

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        return super().get_context(name, None, attrs)


def is_amex(number: str) -> bool:
    return number[:2] in ("34", "37")


class CardForm(forms.Form):
    number = forms.CharField(
        label="Card number",
        max_length=30,
        help_text="Spaces are fine. Use a test card from the list below.",
        widget=UnrenderedTextInput(
            attrs={
                "autocomplete": "cc-number",
                "inputmode": "numeric",
                "placeholder": "1234 1234 1234 1234",
            }
        ),
    )
    expiry = forms.CharField(
        label="Expiry date (MM/YY)",
        max_length=9,
        widget=forms.TextInput(
            attrs={"autocomplete": "cc-exp", "inputmode": "numeric", "placeholder": "MM/YY"}
        ),
    )
    cvc = forms.CharField(
        label="Security code (CVC)",
        max_length=4,
        help_text="3 digits on the back; 4 on the front of American Express cards.",
        widget=UnrenderedTextInput(attrs={"autocomplete": "cc-csc", "inputmode": "numeric"}),
    )
    name = forms.CharField(
        label="Name on card",
        max_length=100,
        widget=forms.TextInput(attrs={"autocomplete": "cc-name"}),
    )

    @method_decorator(sensitive_variables("number", "digits"))
    def clean_number(self) -> str:
        number: str = self.cleaned_data["number"]
        digits = _SEPARATORS.sub("", number)
        if not _DIGITS.fullmatch(digits) or not 13 <= len(digits) <= 19:
            raise forms.ValidationError(
                "Enter the card number: 13 to 19 digits, with or without spaces.",
                code="invalid_number",
            )
        if not luhn_valid(digits):
            raise forms.ValidationError(
                "This card number is not valid. Check it for a typing mistake and try again.",
                code="incorrect_number",
            )
        return digits

    def clean_expiry(self) -> tuple[int, int]:
        """(month, year) of a card that has not expired yet."""
        match = _EXPIRY.fullmatch(self.cleaned_data["expiry"])
        if match is None:
            raise forms.ValidationError(
                "Enter the expiry date as MM/YY, like 04/29.", code="invalid_expiry"
            )
        month, year = int(match.group(1)), int(match.group(2))
        today = clock.now()
        if year < 100:
            year += today.year // 100 * 100
        if (year, month) < (today.year, today.month):
            raise forms.ValidationError(
                "This card has expired. Check the date, or use another card.", code="expired_card"
            )
        if year > today.year + _MAX_YEARS_AHEAD:
            raise forms.ValidationError(
                "Check the expiry year: it is too far in the future.", code="invalid_expiry"
            )
        return month, year

    @method_decorator(sensitive_variables("cvc"))
    def clean_cvc(self) -> str:
        cvc: str = self.cleaned_data["cvc"]
        if not _CVC.fullmatch(cvc):
            raise forms.ValidationError(
                "Enter the security code: 3 or 4 digits.", code="invalid_cvc"
            )
        return cvc

    @method_decorator(sensitive_variables("number", "cvc"))
    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        number, cvc = cleaned.get("number"), cleaned.get("cvc")
        if number and cvc and len(cvc) != (4 if is_amex(number) else 3):
            self.add_error(
                "cvc",
                forms.ValidationError(
                    "American Express cards have a 4-digit security code on the front."
                    if is_amex(number)
                    else "Enter the 3-digit security code from the back of the card.",
                    code="invalid_cvc",
                ),
            )
        return cleaned
