"""Forms of the organisation pages: they check what was typed; ``organisations.services``
decides what is allowed."""

from __future__ import annotations

from typing import Any

from django import forms

from tollgate.accounts.models import User
from tollgate.organisations.models import Membership, Role
from tollgate.organisations.services import NAME_MAX_LENGTH

ROLE_CHOICE = "Choose admin or member."


class InviteForm(forms.Form):
    email = forms.EmailField(
        label="Email address",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )
    role = forms.ChoiceField(
        label="Role",
        choices=[
            (Role.MEMBER.value, "Member: uses the plan"),
            (Role.ADMIN.value, "Admin: also sees invoices and manages billing and members"),
        ],
        initial=Role.MEMBER.value,
    )


class RoleForm(forms.Form):
    """An owner makes a member an admin, or an admin a plain member."""

    role = forms.ChoiceField(
        choices=[(Role.ADMIN.value, "Admin"), (Role.MEMBER.value, "Member")],
    )


class RenameForm(forms.Form):
    name = forms.CharField(label="Organisation name", max_length=NAME_MAX_LENGTH, required=False)


class TransferForm(forms.Form):
    """Transfer ownership: the new owner and the acting owner's current password (re-authentication,
    as deleting the account asks it)."""

    new_owner = forms.ChoiceField(label="New owner")
    password = forms.CharField(
        label="Your current password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, *args: Any, user: User, members: list[Membership], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        field = self.fields["new_owner"]
        assert isinstance(field, forms.ChoiceField)  # noqa: S101
        field.choices = [
            (m.user.public_id, f"{m.user.name or m.user.email} ({m.get_role_display()})")
            for m in members
            if m.user_id != user.pk
        ]

    def clean_password(self) -> str:
        password: str = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError("That is not your current password.")
        return password
