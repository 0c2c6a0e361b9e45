from __future__ import annotations

from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from tollgate.accounts.models import User


class StaffUserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


class StaffUserChangeForm(UserChangeForm):
    class Meta:
        model = User
        fields = (
            "email",
            "name",
            "is_active",
            "is_staff",
            "is_superuser",
            "groups",
            "user_permissions",
        )
