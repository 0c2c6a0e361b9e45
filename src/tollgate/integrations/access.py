"""What a customer may do, as the operator's product asks it: the whole picture (plan, features,
limits with their use) and the single check on the product's hot path.

Both read only cached data once warm (the customer reference, the entitlements, the month's
usage): no database query for an allowed check. An upgrade offer, needed when something is missing
or nearly used up, reads the catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache

from tollgate.billing.entitlements import (
    GRANTING,
    UNLIMITED,
    Entitlements,
    UpgradeOffer,
    entitlements_cache_keys,
    entitlements_for_customer,
    upgrade_offer_for,
    upgrade_offers_for,
)
from tollgate.billing.states import SubscriptionStatus
from tollgate.catalog.selectors import metric_resets
from tollgate.core.errors import ValidationFailed
from tollgate.integrations.customers import CustomerRef
from tollgate.integrations.representations import iso
from tollgate.integrations.usage import Usage, usage_cache_key, usage_current

KEY_MAX_LENGTH = 64
MAX_QUANTITY = 10**12


class Reason:
    """Why a check was refused (``reason`` in the answer)."""

    NO_SUBSCRIPTION = "no_subscription"
    PAST_DUE = "past_due"
    FEATURE_NOT_IN_PLAN = "feature_not_in_plan"
    LIMIT_REACHED = "limit_reached"


@dataclass(frozen=True, slots=True)
class CheckResult:
    allowed: bool
    reason: str | None
    remaining: int | None
    upgrade: UpgradeOffer | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "reason": self.reason,
            "remaining": self.remaining,
            "upgrade": offer_data(self.upgrade),
        }


def offer_data(offer: UpgradeOffer | None) -> dict[str, Any] | None:
    if offer is None:
        return None
    return {
        "reason": offer.reason,
        "key": offer.key,
        "plan": offer.plan_code,
        "plan_name": offer.plan_name,
        "price": offer.price_id,
        "amount": offer.amount,
        "currency": offer.currency,
        "interval": offer.interval,
        "interval_count": offer.interval_count,
        "limit": None if offer.limit == UNLIMITED else offer.limit,
    }


def entitlement_check_cache_keys(*, customer: CustomerRef) -> list[str]:
    """What :func:`entitlement_check` reads from the cache, for a caller that reads several keys
    at once and passes what it found."""
    return [*entitlements_cache_keys(customer.pk), usage_cache_key(customer.pk)]


def _current_and_usage(
    customer: CustomerRef, found: Mapping[str, Any] | None = None
) -> tuple[Entitlements, Usage]:
    """The entitlements and the month's usage, read from the cache in one round trip (none when
    the caller passes what it ``found`` of :func:`entitlement_check_cache_keys`)."""
    usage_key = usage_cache_key(customer.pk)
    if found is None:
        found = cache.get_many(entitlement_check_cache_keys(customer=customer))
    current = entitlements_for_customer(customer_pk=customer.pk, found=found)
    usage = usage_current(customer=customer, entitlements=current, cached=found.get(usage_key))
    return current, usage


def _near(used: int, limit: int) -> bool:
    return limit >= 0 and used * 5 >= limit * 4  # within 20% of the limit, in integers


def entitlements_view(*, customer: CustomerRef) -> dict[str, Any]:
    """The customer's plan, status and period end, every feature on or off, every limit with its
    use and what remains (``null`` limit: unlimited), and the upgrade offers for what is missing
    or nearly used up."""
    current, usage = _current_and_usage(customer)
    limits = {
        key: _limit_state(limit, usage.used(key)) for key, limit in sorted(current.limits.items())
    }
    granting = current.status in GRANTING
    offers = (
        upgrade_offers_for(current=current, usage={key: usage.used(key) for key in current.limits})
        if granting
        else []
    )
    return {
        "customer": customer.public_id,
        "plan": current.plan_code or None,
        "plan_name": current.plan_name or None,
        "status": current.status or None,
        "subscription": current.subscription_id or None,
        "current_period_end": iso(current.period_end),
        "usage_period_start": iso(usage.period.start),
        "usage_period_end": iso(usage.period.end),
        "features": {key: bool(on) for key, on in sorted(current.features.items())},
        "limits": limits,
        "upgrade": [offer_data(offer) for offer in offers],
    }


def _limit_state(limit: int, used: int) -> dict[str, int | None]:
    if limit == UNLIMITED:
        return {"limit": None, "used": used, "remaining": None}
    return {"limit": limit, "used": used, "remaining": max(limit - used, 0)}


def _key_check(feature: str) -> str:
    if not 1 <= len(feature) <= KEY_MAX_LENGTH or not all(
        char.isascii() and (char.isalnum() or char in "_-.:") for char in feature
    ):
        raise ValidationFailed(
            "feature is a feature or limit key of the catalog (letters, digits, _ - . :).",
            details={"field": "feature"},
        )
    return feature


def entitlement_check(
    *,
    customer: CustomerRef,
    feature: str,
    quantity: int = 1,
    found: Mapping[str, Any] | None = None,
) -> CheckResult:
    """May ``customer`` use ``feature`` now (a feature key), or ``quantity`` more of it (a limit
    key)? Refused with a reason: no subscription that grants access, an unpaid one (past due),
    a feature the plan lacks, or a limit that ``quantity`` more would pass. A refusal, or use
    within 20% of a limit, comes with the cheapest plan that unlocks more. ``found``: what the
    caller read already of :func:`entitlement_check_cache_keys`."""
    feature = _key_check(feature)
    if not 0 <= quantity <= MAX_QUANTITY:
        raise ValidationFailed(f"quantity is 0 to {MAX_QUANTITY}.", details={"field": "quantity"})
    current, usage = _current_and_usage(customer, found)
    if current.status not in GRANTING:
        reason = Reason.PAST_DUE if current.status == SubscriptionStatus.UNPAID else None
        return CheckResult(False, reason or Reason.NO_SUBSCRIPTION, None, None)
    if feature in current.limits:
        return _limit_check(current, usage, feature, quantity)
    if current.has(feature):
        return CheckResult(True, None, None, None)
    if feature in metric_resets():  # a limit this plan does not have
        return _limit_check(current, usage, feature, quantity)
    offer = upgrade_offer_for(current=current, key=feature)
    return CheckResult(False, Reason.FEATURE_NOT_IN_PLAN, None, offer)


def _limit_check(current: Entitlements, usage: Usage, key: str, quantity: int) -> CheckResult:
    limit = current.limit(key)
    used = usage.used(key)
    if limit == UNLIMITED:
        return CheckResult(True, None, None, None)
    remaining = max(limit - used, 0)
    if used + quantity > limit:
        offer = upgrade_offer_for(current=current, key=key, used=used + quantity)
        reason = Reason.LIMIT_REACHED if limit > 0 else Reason.FEATURE_NOT_IN_PLAN
        return CheckResult(False, reason, remaining, offer)
    after = used + quantity
    offer = upgrade_offer_for(current=current, key=key, used=after) if _near(after, limit) else None
    return CheckResult(True, None, remaining, offer)
