"""The customer's own API keys, under the account pages: listed, created, rotated and revoked.

Creating and rotating keys needs a plan with the ``api_access`` feature (the page explains and
links to the pricing page otherwise); a key that exists can always be revoked. A customer reaches
only their own keys: any other key id is "not found". A new key's secret is rendered once, in the
response to the request that created it, and kept nowhere.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from tollgate.accounts.models import User
from tollgate.billing.entitlements import entitlements_for
from tollgate.billing.models import Customer
from tollgate.billing.selectors import customer_for
from tollgate.core.errors import ValidationFailed
from tollgate.integrations import keys
from tollgate.integrations.models import ApiKey
from tollgate.organisations.errors import BillingManagedByOthers
from tollgate.organisations.models import Role
from tollgate.organisations.selectors import role_of
from tollgate.web import errors
from tollgate.web.api_key_forms import ApiKeyCreateForm, RotateForm, key_rows


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # every view here requires a signed-in account  # noqa: S101
    return user


def _in_plan(user: User) -> bool:
    return entitlements_for(user=user).has(keys.CUSTOMER_KEYS_FEATURE)


def _own_key(customer: Customer | None, key_id: str) -> ApiKey | None:
    if customer is None:
        return None
    return (
        ApiKey.objects.select_related("customer")
        .filter(public_id=key_id, customer=customer, kind=ApiKey.Kind.CUSTOMER)
        .first()
    )


@require_http_methods(["GET", "HEAD", "POST"])
@never_cache
@login_required
def api_keys(request: HttpRequest) -> HttpResponse:
    """The customer's keys, and the form that creates one when their plan includes API access."""
    user = _user(request)
    customer = customer_for(user=user)
    # A plain member of an organisation uses its plan; its owners and admins manage its keys.
    member_only = customer is None and role_of(user=user) == Role.MEMBER
    in_plan = not member_only and _in_plan(user)
    if request.method == "POST" and member_only:
        return errors.from_exception(request, BillingManagedByOthers())
    if request.method == "POST" and (customer is None or not in_plan):
        return errors.from_exception(request, keys.ApiKeysNotInPlan())
    form = None
    if in_plan:
        form = ApiKeyCreateForm(
            request.POST if request.method == "POST" else None, scopes=keys.CUSTOMER_SCOPES
        )
    if customer is not None and form is not None and form.is_bound and form.is_valid():
        try:
            issued = keys.customer_api_key_create(
                customer=customer,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=form.expires_at(),
                actor=user,
            )
        except keys.ApiKeysNotInPlan as exc:
            return errors.from_exception(request, exc)
        except ValidationFailed as exc:
            form.refusal(exc)
        else:
            return render(
                request, "account/api_keys/issued.html", {"issued": issued, "rotated": None}
            )
    owned = ApiKey.objects.filter(customer=customer) if customer else ApiKey.objects.none()
    return render(
        request,
        "account/api_keys/list.html",
        {"form": form, "in_plan": in_plan, "member_only": member_only, "rows": key_rows(owned)},
        status=422 if form is not None and form.is_bound else 200,
    )


@require_http_methods(["GET", "HEAD", "POST"])
@never_cache
@login_required
def api_key_rotate(request: HttpRequest, key_id: str) -> HttpResponse:
    user = _user(request)
    key = _own_key(customer_for(user=user), key_id)
    if key is None:
        return errors.error_response(request, 404)
    if not _in_plan(user):
        return errors.from_exception(request, keys.ApiKeysNotInPlan())
    form = RotateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            issued = keys.api_key_rotate(key=key, overlap=form.overlap(), actor=user)
        except ValidationFailed as exc:
            form.refusal(exc)
        else:
            return render(
                request, "account/api_keys/issued.html", {"issued": issued, "rotated": key}
            )
    return render(
        request,
        "account/api_keys/rotate.html",
        {"key": key, "form": form, "row": key_rows([key])[0]},
        status=422 if form.is_bound else 200,
    )


@require_http_methods(["GET", "HEAD", "POST"])
@never_cache
@login_required
def api_key_revoke(request: HttpRequest, key_id: str) -> HttpResponse:
    """Asks first (GET), then stops the key at once (POST)."""
    key = _own_key(customer_for(user=_user(request)), key_id)
    if key is None:
        return errors.error_response(request, 404)
    if request.method != "POST":
        return render(
            request, "account/api_keys/revoke.html", {"key": key, "row": key_rows([key])[0]}
        )
    keys.api_key_revoke(key=key, actor=_user(request))
    messages.success(request, f"The key {key.name} is revoked: it no longer works.")
    return redirect("web:account_api_keys")
