"""Seats: a per-seat price (``Price.per_seat``) is paid once for each of the subscription's seats,
and the organisation sharing the subscription has at most that many people.

- The seats a subscription pays for are ``Subscription.seats``; fewer seats asked for during a
  paid period take effect at its end (``scheduled_seats``), like a downgrade; more seats take
  effect at once, the added seats prorated for the rest of the period (``previews.seats_proration``).
- Seats never go below the organisation's members (``SeatsBelowMembers``); someone is invited or
  joins only while a seat is free (``NoFreeSeat``), counting the open invitations as taken seats.
  The bound is the lower of now and the next period when either is per seat.
"""

from __future__ import annotations

from typing import Any

from tollgate.billing.errors import NoFreeSeat, SeatsBelowMembers
from tollgate.billing.models import Customer, Subscription
from tollgate.billing.states import SUBSCRIPTION_ENDED
from tollgate.catalog.models import Price
from tollgate.core.errors import ValidationFailed
from tollgate.organisations.models import Membership

# The most seats a subscription can have (a form's bound, not a business rule).
SEATS_MAX = 100_000


def members_count(customer: Customer) -> int:
    """The members of the customer's organisation (one query; 0 without one)."""
    if customer.organisation_id is None:
        return 0
    return Membership.objects.filter(organisation_id=customer.organisation_id).count()


def seats_bound(subscription: Subscription) -> int | None:
    """How many people the subscription's organisation may hold: the seats of its current price if
    that is per seat, and of the next period's if that is, whichever is lower; None when neither is
    per seat (no bound)."""
    bounds = []
    if subscription.price.per_seat:
        bounds.append(subscription.seats)
    following = subscription.scheduled_price or subscription.price
    if following.per_seat:
        bounds.append(subscription.seats_next)
    return min(bounds) if bounds else None


def seats_checked(seats: Any) -> int:
    """``seats`` if it is a whole number of seats a subscription can have (ValidationFailed
    otherwise)."""
    if isinstance(seats, bool) or not isinstance(seats, int) or not 1 <= seats <= SEATS_MAX:
        raise ValidationFailed(
            f"Choose a whole number of seats from 1 to {SEATS_MAX:,}.", details={"field": "seats"}
        )
    return seats


def seats_for_start(*, customer: Customer, price: Price, seats: int | None) -> int:
    """The seats a new subscription of ``customer`` on ``price`` pays for: ``seats`` (by default one
    per member of its organisation) on a per-seat price, never fewer than its members
    (``SeatsBelowMembers``); 1 on a flat price."""
    if not price.per_seat:
        return 1
    members = members_count(customer)
    if seats is None:
        return max(1, members)
    if seats < members:
        raise SeatsBelowMembers(details={"members": members, "field": "seats"})
    return seats


def seats_for_price(*, subscription: Subscription, members: int, price: Price) -> int:
    """The seats ``subscription`` pays for when it moves to ``price`` now: the ones it has, and at
    least one per member on a per-seat price."""
    return max(subscription.seats, members) if price.per_seat else subscription.seats


def seats_following(*, subscription: Subscription, members: int, price: Price) -> int:
    """The seats ``subscription`` pays for when it moves to ``price`` at its period end: the ones
    it will have then, and at least one per member on a per-seat price."""
    following = subscription.seats_next
    return max(following, members) if price.per_seat else following


def seats_of(organisation: Any) -> int | None:
    """How many people ``organisation`` may hold (``seats_bound`` of its live subscription); None
    without a bound (no subscription, or none per seat). One query."""
    subscription = (
        Subscription.objects.filter(customer__organisation=organisation)
        .exclude(status__in=sorted(SUBSCRIPTION_ENDED))
        .select_related("price", "scheduled_price")
        .first()
    )
    return seats_bound(subscription) if subscription is not None else None


def organisation_join_check(organisation: Any, people: int) -> None:
    """Registered with ``organisations.registry``: refuse a new member or invitation that would
    take the organisation past the seats its subscription pays for."""
    bound = seats_of(organisation)
    if bound is not None and people > bound:
        raise NoFreeSeat(details={"seats": bound})
