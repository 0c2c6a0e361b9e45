"""Billing pages are for those who manage an organisation's billing: its owners and admins. A
plain member is shown who does (403) instead of an empty billing page they could subscribe from."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from tollgate.organisations.models import BILLING_ROLES
from tollgate.organisations.selectors import membership_of, role_of

View = Callable[..., HttpResponse]


def billing_managers_only(view: View) -> View:
    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = role_of(user=request.user)  # cached: no query once warm
        if role and role not in BILLING_ROLES:
            membership = membership_of(user=request.user)
            return render(
                request,
                "billing/managed_by_organisation.html",
                {"organisation": membership.organisation if membership else None},
                status=403,
            )
        return view(request, *args, **kwargs)

    return guarded
