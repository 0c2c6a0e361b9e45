"""The form that deletes one's own account: the current password and a typed confirmation."""

from __future__ import annotations

from typing import Any

from django import forms

from tollgate.accounts.models import User

CONFIRMATION = "DELETE"


class AccountDeleteForm(forms.Form):
    password = forms.CharField(
        label="Your current password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    confirmation = forms.CharField(
        label=f"Type {CONFIRMATION} to confirm",
        help_text="This cannot be undone.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password: str = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError("That is not your current password.")
        return password

    def clean_confirmation(self) -> str:
        typed: str = self.cleaned_data["confirmation"].strip()
        if typed != CONFIRMATION:
            raise forms.ValidationError(f"Type {CONFIRMATION} in capitals to confirm.")
        return typed
