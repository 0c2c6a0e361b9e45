from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from tollgate.billing.selectors import customer_for, subscription_current
from tollgate.catalog.selectors import plans_for_sale
from tollgate.web.context_processors import payment_overdue_of


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "web/home.html")


@require_safe
def pricing(request: HttpRequest) -> HttpResponse:
    interval = "year" if request.GET.get("interval") == "year" else "month"
    plans = []
    for plan in plans_for_sale():
        price = next((p for p in plan.prices.all() if p.interval == interval), None)
        if price is not None:
            plans.append((plan, price))
    customer = customer_for(user=request.user)
    subscription = subscription_current(customer=customer) if customer else None
    return render(
        request,
        "web/pricing.html",
        {
            "plans": plans,
            "interval": interval,
            "subscription": subscription,
            "payment_overdue": payment_overdue_of(subscription),
        },
    )


@require_safe
@login_required
def account(request: HttpRequest) -> HttpResponse:
    return render(request, "web/account.html")
