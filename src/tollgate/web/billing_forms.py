"""Forms of the billing pages. Forms that move money carry a hidden single-use token
(``core.idempotency.form_token_issue``): submitting one twice runs its request once."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import QueryDict

from tollgate.billing.models import Subscription
from tollgate.billing.seats import SEATS_MAX
from tollgate.core.errors import FormTokenInvalid
from tollgate.core.idempotency import form_token_issue, form_token_redeem


def hidden_errors_shown(form: forms.Form) -> bool:
    """Make the errors of ``form``'s hidden fields the form's own errors, which the page shows (a
    hidden field has no place of its own to show one); whether its ``form_token`` was refused."""
    refused = False
    for name, field in form.fields.items():
        if field.widget.is_hidden and name in form.errors:
            refused |= name == "form_token"
            for error in form.errors.pop(name).as_data():
                form.add_error(None, error)
    return refused


class TokenForm(forms.Form):
    """A form with a hidden token bound to its ``purpose`` and to the account it was shown to;
    once valid, ``cleaned_data["idempotency_key"]`` is the key its request runs under.

    A hidden field has no place on the page to show an error, so a refused token (missing, forged,
    expired) or another hidden value is the form's own error, and the form shown again carries a
    fresh token: submitting it again works."""

    purpose = ""

    form_token = forms.CharField(
        widget=forms.HiddenInput,
        error_messages={"required": FormTokenInvalid.default_message},
    )

    def __init__(self, *args: Any, owner: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner
        self.token_refused = False
        if not self.is_bound:
            self.initial["form_token"] = form_token_issue(purpose=self.purpose, owner=owner)

    def full_clean(self) -> None:
        super().full_clean()
        if not self.is_bound:
            return
        self.token_refused |= hidden_errors_shown(self)
        if self.token_refused:
            data = self.data.copy() if isinstance(self.data, QueryDict) else dict(self.data)
            data[self.add_prefix("form_token")] = form_token_issue(
                purpose=self.purpose, owner=self.owner
            )
            self.data = data

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        token = cleaned.get("form_token")
        if token:
            try:
                cleaned["idempotency_key"] = form_token_redeem(
                    token=token, purpose=self.purpose, owner=self.owner
                )
            except FormTokenInvalid as exc:
                self.token_refused = True
                raise forms.ValidationError(exc.message, code=exc.code) from exc
        return cleaned


class CheckoutForm(TokenForm):
    """Starting a subscription; the pressed button says how."""

    purpose = "subscription_start"

    CARD = "card"  # save a card on the gateway's hosted form first (then a trial, or a charge)
    TRIAL = "trial"  # a trial without a card
    SAVED = "saved"  # with the card already saved
    FREE = "free"  # a free price: nothing to pay
    PAY_NOW = "pay_now"  # skip the plan's trial: charge now (the saved card, or save one first)
    APPLY = "apply"  # check the promotion code and show its discount; starts nothing
    UPDATE = "update"  # show the total for the seats asked for; starts nothing
    WITHOUT_TRIAL = frozenset({FREE, PAY_NOW})  # the actions that start no trial
    PREVIEWS = frozenset({APPLY, UPDATE})  # the actions that start nothing

    action = forms.ChoiceField(
        choices=[
            (CARD, CARD),
            (TRIAL, TRIAL),
            (SAVED, SAVED),
            (FREE, FREE),
            (PAY_NOW, PAY_NOW),
            (APPLY, APPLY),
            (UPDATE, UPDATE),
        ],
        widget=forms.HiddenInput,
    )
    seats = forms.IntegerField(
        label="Seats",
        required=False,
        min_value=1,
        max_value=SEATS_MAX,
        help_text="One for each person in your organisation; add more as it grows.",
    )
    promotion_code = forms.CharField(
        label="Promotion code (optional)",
        required=False,
        max_length=40,
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters"}),
    )

    def token_renew(self) -> None:
        """Carry a fresh token: the request refused under the old one keeps it."""
        data = self.data.copy() if isinstance(self.data, QueryDict) else dict(self.data)
        data[self.add_prefix("form_token")] = form_token_issue(
            purpose=self.purpose, owner=self.owner
        )
        self.data = data


class ChangePlanForm(TokenForm):
    purpose = "subscription_change_price"

    price = forms.CharField(widget=forms.HiddenInput, max_length=32)


class SeatsForm(TokenForm):
    purpose = "subscription_seats_change"

    seats = forms.IntegerField(
        label="Seats", min_value=1, max_value=SEATS_MAX, widget=forms.HiddenInput
    )


class PayInvoiceForm(TokenForm):
    """Paying an open invoice now with the saved card."""

    purpose = "invoice_pay"


class CancelForm(TokenForm):
    purpose = "subscription_cancel"

    reason = forms.ChoiceField(
        label="Why are you canceling?",
        choices=Subscription.CancellationReason.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose the reason closest to yours."},
    )
    comment = forms.CharField(
        label="Anything else you'd like to tell us? (optional)",
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
