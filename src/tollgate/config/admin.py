"""The admin site: every model admin is audited, and signing in goes through the account flow (MFA)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode


def audit_record(**kwargs: Any) -> None:
    # Imported when used: this module is loaded with the admin app, before models are ready.
    from tollgate.audit.services import audit_record as record

    record(**kwargs)


class AuditedAdminMixin:
    """Records every add, change and delete made through the admin as an audit event."""

    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        audit_record(
            action="admin.add", actor=request.user, target=obj, details={"change": message}
        )
        return super().log_addition(request, obj, message)  # type: ignore[misc]

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        audit_record(
            action="admin.change", actor=request.user, target=obj, details={"change": message}
        )
        return super().log_change(request, obj, message)  # type: ignore[misc]

    def log_deletions(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        for obj in queryset:
            audit_record(
                action="admin.delete",
                actor=request.user,
                target=obj,
                details={"repr": str(obj)[:200]},
            )
        return super().log_deletions(request, queryset)  # type: ignore[misc]


class TollgateAdminSite(admin.AdminSite):
    site_header = "Tollgate administration"
    site_title = "Tollgate"
    index_title = "Operations"

    def register(
        self,
        model_or_iterable: type[Model] | Iterable[type[Model]],
        admin_class: type[admin.ModelAdmin[Any]] | None = None,
        **options: Any,
    ) -> None:
        base = admin_class or admin.ModelAdmin
        audited = type(base.__name__, (AuditedAdminMixin, base), {"__module__": base.__module__})
        super().register(model_or_iterable, audited, **options)

    def login(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Staff sign in like everyone else, so MFA and rate limits apply to them too.
        next_url = request.GET.get("next") or reverse("admin:index")
        return HttpResponseRedirect(f"{reverse('account_login')}?{urlencode({'next': next_url})}")


class TollgateAdminConfig(AdminConfig):
    default_site = "tollgate.config.admin.TollgateAdminSite"
