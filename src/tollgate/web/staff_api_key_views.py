"""Staff pages for API keys: every key (the operator's and customers'), issuing operator keys,
rotating and revoking.

A new key's secret is rendered once, in the response to the request that created it: never put in
the session, a message or a URL, and kept nowhere (only its hash is stored). The services in
``integrations.keys`` check the rules and audit every change.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from tollgate.accounts.models import User
from tollgate.core.errors import ValidationFailed
from tollgate.integrations import keys
from tollgate.integrations.models import ApiKey
from tollgate.web import errors
from tollgate.web.api_key_forms import OperatorKeyCreateForm, RotateForm, key_rows
from tollgate.web.staff_tables import Table, table_page
from tollgate.web.staff_views import staff_required

KEY_SORTS = {
    "name": "name",
    "created": "created_at",
    "expires": "expires_at",
    "last_used": "last_used_at",
}


def _staff(request: HttpRequest) -> User:
    """The signed-in staff member (``staff_required`` has checked)."""
    return cast(User, request.user)


def _key(key_id: str) -> ApiKey | None:
    return ApiKey.objects.select_related("customer").filter(public_id=key_id).first()


def _create_form(request: HttpRequest) -> OperatorKeyCreateForm:
    data = request.POST if request.method == "POST" else None
    return OperatorKeyCreateForm(data, scopes=keys.SCOPES)


@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def api_keys(request: HttpRequest) -> HttpResponse:
    """The keys, newest first, and the form that issues an operator key."""
    form = _create_form(request)
    if request.method == "POST" and form.is_valid():
        try:
            issued = keys.api_key_create(
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=form.expires_at(),
                rate_limits=form.rate_limits(),
                actor=_staff(request),
            )
        except ValidationFailed as exc:
            form.refusal(exc)
        else:
            return render(
                request, "staff/api_keys/issued.html", {"issued": issued, "rotated": None}
            )
    return render(
        request,
        "staff/api_keys/list.html",
        {
            "form": form,
            "operator_keys": _keys_table(request, ApiKey.Kind.OPERATOR, prefix="operator"),
            "customer_keys": _keys_table(request, ApiKey.Kind.CUSTOMER, prefix="customer"),
        },
        status=422 if form.is_bound else 200,
    )


def _keys_table(request: HttpRequest, kind: str, *, prefix: str) -> dict[str, Any]:
    """One page of the keys of ``kind`` (newest first unless another sort is chosen) and its rows
    as the table shows them."""
    table: Table[ApiKey] = table_page(
        ApiKey.objects.select_related("customer").filter(kind=kind),
        params=request.GET,
        sorts=KEY_SORTS,
        default="created",
        prefix=prefix,
        anchor=f"#{prefix}-keys",
    )
    return {"table": table, "rows": key_rows(table.rows)}


@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def api_key_rotate(request: HttpRequest, key_id: str) -> HttpResponse:
    """A new key in place of this one; the old one keeps working for the overlap chosen."""
    key = _key(key_id)
    if key is None:
        return errors.error_response(request, 404)
    form = RotateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            issued = keys.api_key_rotate(key=key, overlap=form.overlap(), actor=_staff(request))
        except ValidationFailed as exc:
            form.refusal(exc)
        else:
            return render(request, "staff/api_keys/issued.html", {"issued": issued, "rotated": key})
    return render(
        request,
        "staff/api_keys/rotate.html",
        {"key": key, "form": form, "row": key_rows([key])[0]},
        status=422 if form.is_bound else 200,
    )


@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def api_key_revoke(request: HttpRequest, key_id: str) -> HttpResponse:
    """Asks first (GET), then stops the key at once (POST)."""
    key = _key(key_id)
    if key is None:
        return errors.error_response(request, 404)
    if request.method != "POST":
        return render(
            request, "staff/api_keys/revoke.html", {"key": key, "row": key_rows([key])[0]}
        )
    keys.api_key_revoke(key=key, actor=_staff(request))
    messages.success(request, f"{key.name} ({key.public_id}) is revoked: it no longer works.")
    return redirect("staff:api_keys")
