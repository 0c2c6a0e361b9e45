from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.safestring import SafeString
from django.utils.translation import get_language
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from tollgate.accounts.models import User
from tollgate.billing.selectors import customer_for, subscription_current
from tollgate.catalog.models import Plan, Price
from tollgate.catalog.selectors import CACHE_SECONDS, CATALOG_VERSION_KEY, plans_for_sale
from tollgate.core import clock
from tollgate.core.errors import TollgateError
from tollgate.web.account_data import account_data_export
from tollgate.web.account_deletion import account_delete
from tollgate.web.account_deletion_forms import AccountDeleteForm
from tollgate.web.context_processors import payment_overdue_of


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "web/home.html")


PRICING_CARDS_CACHE_KEY = "web:pricing-cards"


@require_safe
def pricing(request: HttpRequest) -> HttpResponse:
    interval = "year" if request.GET.get("interval") == "year" else "month"
    if not request.user.is_authenticated:
        context = {"cards": _anonymous_cards(interval), "interval": interval}
        return render(request, "web/pricing.html", context)
    customer = customer_for(user=request.user)
    subscription = subscription_current(customer=customer) if customer else None
    return render(
        request,
        "web/pricing.html",
        {
            "plans": _plans_at(interval),
            "interval": interval,
            "subscription": subscription,
            "payment_overdue": payment_overdue_of(subscription),
        },
    )


def _plans_at(interval: str) -> list[tuple[Plan, Price]]:
    """Each plan for sale with its price at ``interval`` (plans without one are left out)."""
    plans = []
    for plan in plans_for_sale():
        price = next((p for p in plan.prices.all() if p.interval == interval), None)
        if price is not None:
            plans.append((plan, price))
    return plans


def _anonymous_cards(interval: str) -> SafeString:
    """The plan cards every visitor who is not signed in sees (they hold nothing of the visitor's):
    rendered once per catalog version, interval and language and shared by every process through
    the cache, so a catalog change shows on the next page. Warm, the page reads one cache entry and
    the catalog's version in one round trip."""
    key = f"{PRICING_CARDS_CACHE_KEY}:{interval}:{get_language()}"
    found = cache.get_many([key, CATALOG_VERSION_KEY])
    cached, version = found.get(key), found.get(CATALOG_VERSION_KEY) or ""
    if isinstance(cached, tuple) and len(cached) == 2 and cached[0] == version:
        return SafeString(cached[1])
    cards = render_to_string(
        "web/_pricing_cards.html",
        {"plans": _plans_at(interval), "subscription": None, "user": AnonymousUser()},
    )
    cache.set(key, (version, str(cards)), CACHE_SECONDS)
    return SafeString(cards)


@require_safe
@login_required
def account(request: HttpRequest) -> HttpResponse:
    return render(request, "web/account.html")


@require_safe
@login_required
def account_export(request: HttpRequest) -> HttpResponse:
    """The signed-in person's own data as one JSON file (see ``web.account_data``)."""
    user = request.user
    assert isinstance(user, User)  # login_required  # noqa: S101
    document = account_data_export(user=user)
    body = json.dumps(document, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="tollgate-export-{clock.now():%Y-%m-%d}.json"'
    )
    response["Cache-Control"] = "private, no-store"
    return response


@require_http_methods(["GET", "HEAD", "POST"])
@never_cache
@login_required
def account_delete_page(request: HttpRequest) -> HttpResponse:
    """Delete one's own account, with the current password (see ``web.account_deletion``)."""
    user = request.user
    assert isinstance(user, User)  # login_required  # noqa: S101
    form = AccountDeleteForm(request.POST or None, user=user)
    if request.method == "POST" and form.is_valid():
        try:
            account_delete(user=user)
        except TollgateError as exc:
            form.add_error(None, exc.message)
        else:
            # Not logout(): its audit event would name the person again after the anonymisation.
            request.session.flush()
            request.user = AnonymousUser()
            messages.success(request, "Your account is deleted.")
            return redirect("web:home")
    return render(request, "web/account_delete.html", {"form": form})
