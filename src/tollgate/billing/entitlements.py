"""What an account's plan entitles it to, and which plan would unlock more (upgrade prompts).

Access follows the subscription's status as at Stripe: ``trialing``, ``active`` and ``past_due``
(retries still running) grant the plan's features and limits; ``incomplete``, ``unpaid``, ended or
no subscription grant nothing. Results are cached per customer; every change to the customer's
subscription queues an outbox message, in its transaction, that drops the cached copy after commit.
An account's entitlements are those of its organisation's customer.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from django.core.cache import cache
from django.db.models import QuerySet

from tollgate.accounts.models import User
from tollgate.billing.models import Customer, Subscription
from tollgate.billing.periods import interval_months
from tollgate.billing.selectors import customer_of_member
from tollgate.billing.states import SubscriptionStatus
from tollgate.catalog.models import Plan, Price
from tollgate.catalog.selectors import CATALOG_VERSION_KEY, plans_for_sale
from tollgate.core import outbox
from tollgate.core.events import event_publish
from tollgate.organisations.cache import account_cache_key

CACHE_SECONDS = 300
# An account without a customer yet gets one at its first billing step (which drops this).
NO_CUSTOMER_CACHE_SECONDS = 60
# A limit of -1 in the catalog means no limit.
UNLIMITED = -1
OUTBOX_KIND = "billing.entitlements_changed"
GRANTING = frozenset(
    {SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE}
)


@dataclass(frozen=True)
class Entitlements:
    plan_code: str = ""
    plan_name: str = ""
    status: str = ""
    currency: str = ""
    features: Mapping[str, bool] = field(default_factory=dict)
    limits: Mapping[str, int] = field(default_factory=dict)
    api_rate_limits: Mapping[str, str] = field(default_factory=dict)
    subscription_id: str = ""
    price_id: str = ""
    interval: str = ""
    interval_count: int = 0
    period_end: dt.datetime | None = None
    # Where the subscription's months start (its billing anchor): usage that resets each month
    # is counted in months from here.
    usage_anchor: dt.datetime | None = None
    # The catalog version these were computed under: a catalog change makes them stale.
    catalog_version: str = ""

    def has(self, feature: str) -> bool:
        return bool(self.features.get(feature, False))

    def limit(self, name: str) -> int:
        """The plan's limit for ``name``; 0 when the plan sets none (nothing is allowed), and
        :data:`UNLIMITED` (-1) when it sets no bound."""
        return self.limits.get(name, 0)


@dataclass(frozen=True, slots=True)
class UpgradeOffer:
    """The cheapest plan that unlocks ``key``: a missing feature, or a limit nearly used up."""

    reason: str  # "feature" or "limit"
    key: str
    plan_code: str
    plan_name: str
    price_id: str
    amount: int
    currency: str
    interval: str
    interval_count: int
    limit: int | None = None


def entitlements_cache_keys(customer_pk: int) -> list[str]:
    """What :func:`entitlements_for_customer` reads from the cache, for a caller that reads
    several keys at once and passes what it found."""
    return [_cache_key(customer_pk), CATALOG_VERSION_KEY]


def _cache_key(customer_pk: int) -> str:
    return f"billing:entitlements:customer:{customer_pk}"


def _account_cache_key(user_id: int) -> str:
    # Where releases before organisations kept them (per opening account): still dropped, so a
    # process of that release serving during a rolling deploy never reads a stale copy.
    return f"billing:entitlements:{user_id}"


def entitlements_for(*, user: User) -> Entitlements:
    """The features and limits ``user`` is entitled to now: those of their organisation's plan,
    whatever their role in it (cached per account and per customer; no query once warm)."""
    customer_pk = _customer_of(user)
    if customer_pk is None:
        return Entitlements()
    return entitlements_for_customer(customer_pk=customer_pk)


def _customer_of(user: User) -> int | None:
    """The pk of the customer of the account's organisation (0 cached for none); cached until the
    account's membership changes (``organisations.cache``)."""
    key = account_cache_key(user.public_id, "customer")
    cached = cache.get(key)
    if isinstance(cached, int):
        return cached or None
    customer = customer_of_member(user_id=user.pk)
    if customer is None:
        cache.set(key, 0, NO_CUSTOMER_CACHE_SECONDS)
        return None
    cache.set(key, customer.pk, CACHE_SECONDS)
    return customer.pk


def entitlements_for_customer(
    *, customer_pk: int, found: Mapping[str, Any] | None = None
) -> Entitlements:
    """The same for a customer known by its primary key (cached). ``found``: what the caller
    read already of :func:`entitlements_cache_keys`."""
    return _cached(
        customer_pk, lambda: Subscription.objects.filter(customer_id=customer_pk), found=found
    )


def _cached(
    customer_pk: int,
    subscriptions: Callable[[], QuerySet[Subscription]],
    *,
    found: Mapping[str, Any] | None = None,
) -> Entitlements:
    keys = entitlements_cache_keys(customer_pk)
    if found is None:
        found = cache.get_many(keys)
    cached, version = found.get(keys[0]), found.get(CATALOG_VERSION_KEY) or ""
    if isinstance(cached, Entitlements) and cached.catalog_version == version:
        return cached
    entitlements = replace(_compute(subscriptions()), catalog_version=version)
    cache.set(keys[0], entitlements, CACHE_SECONDS)
    return entitlements


def _compute(subscriptions: QuerySet[Subscription]) -> Entitlements:
    subscription = (
        subscriptions.filter(status__in=sorted(GRANTING)).select_related("price__plan").first()
    )
    if subscription is None:
        # Unpaid (the dunning schedule ran out) grants nothing either, but callers tell it apart.
        unpaid = subscriptions.filter(status=SubscriptionStatus.UNPAID).exists()
        return Entitlements(status=SubscriptionStatus.UNPAID if unpaid else "")
    price = subscription.price
    plan = price.plan
    return Entitlements(
        plan_code=plan.code,
        plan_name=plan.name,
        status=subscription.status,
        currency=price.currency,
        features=dict(plan.features),
        limits=dict(plan.limits),
        api_rate_limits=dict(plan.api_rate_limits),
        subscription_id=subscription.public_id,
        price_id=price.public_id,
        interval=price.interval,
        interval_count=price.interval_count,
        period_end=subscription.current_period_end,
        usage_anchor=subscription.billing_anchor,
    )


def entitlements_changed(*, customer: Customer) -> None:
    """Queue the invalidation of ``customer``'s cached entitlements, in the current transaction, so
    it happens after commit (and only if the change commits), and publish
    ``entitlements.updated`` for the operator's product."""
    outbox.outbox_enqueue(
        kind=OUTBOX_KIND,
        payload={"customer_id": customer.pk, "user_id": customer.user_id},
        dedupe_key=f"{OUTBOX_KIND}:{customer.public_id}:{secrets.token_hex(8)}",
    )
    event_publish(
        event_type="entitlements.updated",
        object_type="customer",
        object_id=customer.public_id,
        key=f"{customer.public_id}:{secrets.token_hex(8)}",
    )


def entitlements_invalidate(payload: dict[str, Any]) -> None:
    """Outbox handler: drop the cached entitlements (idempotent). Messages queued by a release
    before organisations name only the account."""
    keys = []
    if payload.get("user_id") is not None:
        keys.append(_account_cache_key(int(payload["user_id"])))
    if payload.get("customer_id") is not None:
        keys.append(_cache_key(int(payload["customer_id"])))
    elif payload.get("user_id") is not None:
        opened = Customer.objects.filter(user_id=int(payload["user_id"])).values_list(
            "pk", flat=True
        )
        keys.extend(_cache_key(pk) for pk in opened)
    cache.delete_many(keys)


def upgrade_offers(*, user: User, usage: Mapping[str, int] | None = None) -> list[UpgradeOffer]:
    """The data behind upgrade prompts: for every feature the plan lacks, and every limit whose use
    (``usage``, as reported) is within 20% of the plan's limit, the cheapest plan for sale that
    unlocks it, at its cheapest price per month in the account's currency and, where the plan has
    one, on the account's own billing interval."""
    return upgrade_offers_for(current=entitlements_for(user=user), usage=usage)


def upgrade_offers_for(
    *, current: Entitlements, usage: Mapping[str, int] | None = None
) -> list[UpgradeOffer]:
    """:func:`upgrade_offers` for entitlements already at hand."""
    plans = _plans_above(current)
    offers: list[UpgradeOffer] = []
    features = sorted({name for plan, _ in plans for name, on in plan.features.items() if on})
    for name in features:
        if not current.has(name):
            offers.extend(_feature_offer(plans, name))
    for name, used in sorted((usage or {}).items()):
        allowed = current.limit(name)
        if allowed < 0 or used * 5 < allowed * 4:  # unlimited, or below 80% (in integers)
            continue
        offers.extend(_limit_offer(plans, name, max(allowed, used)))
    return offers


def upgrade_offer_for(
    *, current: Entitlements, key: str, used: int | None = None
) -> UpgradeOffer | None:
    """The cheapest plan that unlocks ``key``: the feature ``key`` (``used`` None), or more of the
    limit ``key`` than ``used`` and the current limit."""
    plans = _plans_above(current)
    if used is None:
        return next(iter(_feature_offer(plans, key)), None)
    return next(iter(_limit_offer(plans, key, max(current.limit(key), used))), None)


def _plans_above(current: Entitlements) -> list[tuple[Plan, Price]]:
    plans = [(plan, price) for plan in plans_for_sale() if (price := _cheapest(plan, current))]
    plans.sort(key=lambda item: _MonthlyCost(item[1]))
    return plans


def _feature_offer(plans: list[tuple[Plan, Price]], name: str) -> list[UpgradeOffer]:
    found = next(((p, r) for p, r in plans if p.features.get(name) is True), None)
    return [_offer("feature", name, *found)] if found else []


def _limit_offer(plans: list[tuple[Plan, Price]], name: str, beyond: int) -> list[UpgradeOffer]:
    found = next(
        (
            (p, r)
            for p, r in plans
            if (limit := p.limits.get(name, 0)) > beyond or limit == UNLIMITED
        ),
        None,
    )
    if found is None:
        return []
    return [_offer("limit", name, *found, limit=found[0].limits[name])]


def _cheapest(plan: Plan, current: Entitlements) -> Price | None:
    prices = [
        price
        for price in plan.prices.all()
        if plan.code != current.plan_code
        and (not current.currency or price.currency == current.currency)
    ]
    # A customer who pays monthly is offered the monthly price: the yearly one is cheaper per
    # month but asks for a year's payment at once.
    same_term = [
        price
        for price in prices
        if (price.interval, price.interval_count) == (current.interval, current.interval_count)
    ]
    return min(same_term or prices, key=_MonthlyCost, default=None)


class _MonthlyCost:
    """Orders prices by cost per month without division: a/m < b/n  <=>  a*n < b*m."""

    def __init__(self, price: Price) -> None:
        self.amount = price.amount
        self.months = interval_months(interval=price.interval, interval_count=price.interval_count)

    def __lt__(self, other: _MonthlyCost) -> bool:
        return self.amount * other.months < other.amount * self.months


def _offer(
    reason: str, key: str, plan: Plan, price: Price, *, limit: int | None = None
) -> UpgradeOffer:
    return UpgradeOffer(
        reason=reason,
        key=key,
        plan_code=plan.code,
        plan_name=plan.name,
        price_id=price.public_id,
        amount=price.amount,
        currency=price.currency,
        interval=price.interval,
        interval_count=price.interval_count,
        limit=limit,
    )
