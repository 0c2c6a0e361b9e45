"""Forms of the staff pages. They check what was typed; the services decide what is allowed.

Every form that moves money (or changes what a customer is billed) carries a hidden single-use
token from ``core.idempotency.form_token_issue``, bound to what the form does and to the staff
member it was shown to; submitting it twice does the work once.
"""

from __future__ import annotations

from typing import Any

from django import forms

from tollgate.billing.models import PaymentAttempt, Refund
from tollgate.billing.seats import SEATS_MAX
from tollgate.billing.services import EXTEND_MAX_DAYS
from tollgate.core.errors import FormTokenInvalid
from tollgate.core.money import Money, currency_exponent, money_from_major_units
from tollgate.web.billing_forms import hidden_errors_shown


class LookupForm(forms.Form):
    q = forms.CharField(
        label="Email, name, id, invoice number or card",
        max_length=254,
        help_text="The start of an email, part of a name, a cus_, usr_, sub_, inv_, pay_ or ref_ "
        "id, an invoice number, a card's last 4 digits, the gateway's customer id or your "
        "external id.",
        widget=forms.TextInput(attrs={"autofocus": True, "type": "search"}),
    )


class AuditFilterForm(forms.Form):
    """Narrows a customer's audit trail; every field is optional and a bad value is ignored."""

    action = forms.ChoiceField(label="Action", required=False)
    actor = forms.CharField(
        label="By",
        required=False,
        max_length=254,
        help_text="Start of an email, or system.",
    )
    since = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args: Any, actions: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [("", "Any action"), *((action, action) for action in actions)]
        self.fields["action"].choices = choices  # type: ignore[attr-defined]

    def filters(self) -> dict[str, Any]:
        """The valid filters, by the selector's argument names (invalid ones are dropped)."""
        self.is_valid()
        cleaned = getattr(self, "cleaned_data", {})
        return {name: cleaned[name] for name in self.fields if cleaned.get(name)}


class TokenForm(forms.Form):
    """A form with nothing to fill in but its single-use token (retrying an invoice). A missing or
    mangled token is the form's own error, shown on the page (the view gives a fresh token)."""

    form_token = forms.CharField(
        widget=forms.HiddenInput,
        max_length=500,
        error_messages={
            "required": FormTokenInvalid.default_message,
            "max_length": FormTokenInvalid.default_message,
        },
    )

    token_refused = False

    def full_clean(self) -> None:
        super().full_clean()
        if self.is_bound:
            self.token_refused = hidden_errors_shown(self)


class RefundForm(TokenForm):
    amount = forms.CharField(label="Amount", max_length=32)
    reason = forms.ChoiceField(
        label="Reason", choices=[("", "Choose a reason"), *Refund.Reason.choices]
    )
    note = forms.CharField(
        label="Note for the record",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why the refund is given; kept with the refund and in the audit trail.",
    )

    def __init__(self, *args: Any, payment: PaymentAttempt, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.payment = payment
        refundable = Money(payment.amount - payment.amount_refunded, payment.currency)
        self.fields["amount"].label = f"Amount ({payment.currency})"
        self.fields["amount"].help_text = (
            f"In {payment.currency}, like {_example(payment.currency)}; at most "
            f"{refundable.format()} can be refunded."
        )
        self.fields["amount"].widget.attrs.update({"inputmode": "decimal", "autocomplete": "off"})

    def clean_amount(self) -> int:
        text = self.cleaned_data["amount"]
        try:
            money = money_from_major_units(text, self.payment.currency)
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from exc
        if money.amount <= 0:
            raise forms.ValidationError("Enter an amount above zero.", code="not_positive")
        refundable = self.payment.amount - self.payment.amount_refunded
        if money.amount > refundable:
            raise forms.ValidationError(
                f"At most {Money(refundable, self.payment.currency).format()} can be refunded "
                "from this payment.",
                code="over_refundable",
            )
        return money.amount

    def clean_note(self) -> str:
        note: str = self.cleaned_data["note"].strip()
        if not note:
            raise forms.ValidationError("Say why the refund is given.", code="required")
        return note


def _example(currency: str) -> str:
    exponent = currency_exponent(currency)
    return "12" if not exponent else "12." + "5".ljust(exponent, "0")


class CancelForm(TokenForm):
    WHEN = (("period_end", "At the end of the current period"), ("now", "Now"))

    when = forms.ChoiceField(label="When", choices=WHEN, widget=forms.RadioSelect)
    prorated_refund = forms.BooleanField(
        label="Refund the unused time of the current period (only when canceling now)",
        required=False,
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("prorated_refund") and cleaned.get("when") != "now":
            self.add_error("prorated_refund", "A prorated refund is given only when canceling now.")
        return cleaned


class SeatsForm(TokenForm):
    seats = forms.IntegerField(
        label="Seats",
        min_value=1,
        max_value=SEATS_MAX,
        help_text="More are charged now for the rest of the period (to the card on file); fewer "
        "take effect at the period end. Never fewer than the organisation's members.",
    )


class ExtendForm(TokenForm):
    days = forms.IntegerField(
        label="Days to add",
        min_value=1,
        max_value=EXTEND_MAX_DAYS,
        help_text=f"A whole number of days, 1 to {EXTEND_MAX_DAYS}.",
    )
    reason = forms.CharField(
        label="Reason",
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Kept in the audit trail.",
    )

    def clean_reason(self) -> str:
        reason: str = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Say why the subscription is extended.", code="required")
        return reason
