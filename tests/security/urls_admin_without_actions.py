"""Test-only URLs: an admin site whose change list hides the actions bar, the one admin page that
renders an inline <style> block."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from tollgate.accounts.models import User


class UserAdminWithoutActions(admin.ModelAdmin):
    actions_on_top = False
    actions_on_bottom = False
    list_display = ("email",)


site = admin.AdminSite(name="without_actions")
site.register(User, UserAdminWithoutActions)

urlpatterns = [
    path("admin/", site.urls),
    path("accounts/", include("allauth.urls")),
    path("", include("tollgate.web.urls")),
]
