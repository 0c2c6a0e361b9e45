"""Organisations in the admin: read-only. Who belongs to an organisation changes only through
``organisations.services`` (invitations, roles, removing, leaving, transferring ownership), which
lock the organisation and audit each change; the admin is for finding and reading. An invitation's
token hash is never shown."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest

from tollgate.core.admin import ReadOnlyAdmin
from tollgate.organisations.models import Invitation, Membership, Organisation


class MembershipInline(ReadOnlyAdmin, admin.TabularInline[Membership, Organisation]):
    model = Membership
    fields = readonly_fields = ("account", "email", "role", "created_at")
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        return super().get_queryset(request).select_related("user")

    @admin.display(description="Account")
    def account(self, membership: Membership) -> str:
        return membership.user.public_id

    @admin.display(description="Email")
    def email(self, membership: Membership) -> str:
        return membership.user.email


class InvitationInline(ReadOnlyAdmin, admin.TabularInline[Invitation, Organisation]):
    model = Invitation
    # Never "token_hash": a hash of the secret in the emailed link.
    fields = readonly_fields = (
        "public_id",
        "email",
        "role",
        "status",
        "created_at",
        "expires_at",
        "responded_at",
    )
    extra = 0
    ordering = ("-created_at", "-pk")


@admin.register(Organisation)
class OrganisationAdmin(ReadOnlyAdmin, admin.ModelAdmin[Organisation]):
    list_display = ("public_id", "name", "personal", "members", "created_at")
    list_filter = ("personal",)
    search_fields = ("public_id", "name", "memberships__user__email", "customer__public_id")
    fields = readonly_fields = ("public_id", "name", "personal", "billing_customer", "created_at")
    ordering = ("-created_at", "-pk")
    inlines = [MembershipInline, InvitationInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Organisation]:
        members = (
            Membership.objects.filter(organisation=OuterRef("pk"))
            .order_by()
            .values("organisation")
            .annotate(count=Count("pk"))
            .values("count")
        )
        return (
            super()
            .get_queryset(request)
            .select_related("customer")
            # A subquery, not a join: searching by a member's email joins the memberships too.
            .annotate(member_count=Coalesce(Subquery(members), 0))
        )

    @admin.display(description="Members", ordering="member_count")
    def members(self, organisation: Organisation) -> int:
        return int(organisation.member_count)  # type: ignore[attr-defined]

    @admin.display(description="Billing customer")
    def billing_customer(self, organisation: Organisation) -> str:
        customer = getattr(organisation, "customer", None)
        return customer.public_id if customer is not None else "—"
