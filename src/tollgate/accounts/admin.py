from __future__ import annotations

from allauth.usersessions.admin import UserSessionAdmin as AllauthUserSessionAdmin
from allauth.usersessions.models import UserSession
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from tollgate.accounts.forms import StaffUserChangeForm, StaffUserCreationForm
from tollgate.accounts.models import User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = StaffUserChangeForm
    add_form = StaffUserCreationForm
    ordering = ("-date_joined",)
    list_display = (
        "public_id",
        "email",
        "name",
        "is_staff",
        "is_active",
        "date_joined",
        "last_login",
    )
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("public_id", "email", "name")
    readonly_fields = ("public_id", "date_joined", "last_login", "marketing_opt_out_at")
    fieldsets = (
        (None, {"fields": ("public_id", "email", "name", "password")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Dates", {"fields": ("date_joined", "last_login", "marketing_opt_out_at")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "usable_password", "password1", "password2"),
            },
        ),
    )


# allauth's own admin searches the user's username, which Tollgate's User does not have (it signs in
# with an email address): searching there would fail. The import above has registered it already.
admin.site.unregister(UserSession)


@admin.register(UserSession)
class UserSessionAdmin(AllauthUserSessionAdmin):
    search_fields = ("user__email", "user__public_id", "ip")
