"""Scheduled billing notices, derived from the database rather than from timers.

What is due is read from the state of subscriptions and cards at ``now``:

- trial ending: a trial (not set to cancel) ends within ``TRIAL_ENDING_NOTICE`` (3 days);
- upcoming annual renewal: an active subscription (not set to cancel) whose next period is yearly
  renews within ``RENEWAL_NOTICE`` (7 days); monthly renewals get no notice;
- card expiring: the default card of a subscription that will be charged again (trialing, active
  or past due, not set to cancel, not free) expires at the end of next month;
- win-back (marketing): a subscription ended ``WIN_BACK_AFTER`` (14 days) ago, its customer has
  no live subscription and its account has not unsubscribed; not later than ``WIN_BACK_WINDOW``
  after that (a notice that late would read oddly, and a first run would otherwise write to every
  customer who ever left).

Each notice is sent once per event: its outbox dedupe key names the event (the subscription and the
trial end, the renewal date or the cancellation; the card and its expiry) and the outbox refuses a
key twice (a unique constraint), so running this again, in any number of workers at once or after a
crash, sends nothing twice, and a notice whose email never went out is sent by the outbox sweep.
Workers split the work: each notice is written in its own transaction on its row, taken with
``SELECT ... FOR UPDATE SKIP LOCKED`` (on PostgreSQL), and checked again there, so a row that
changed meanwhile (canceled, renewed, card replaced) is skipped. Each sent notice is audited.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import structlog
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from tollgate.accounts.services import marketing_unsubscribe_token
from tollgate.audit.services import audit_record
from tollgate.billing.emails import billing_links, date_text, price_term
from tollgate.billing.models import PaymentMethod, Subscription
from tollgate.billing.selectors import payment_method_default
from tollgate.billing.states import SubscriptionStatus
from tollgate.catalog.models import Price
from tollgate.core.models import OutboxMessage
from tollgate.core.money import Money
from tollgate.notifications.services import absolute_url, email_send_template

log = structlog.get_logger(__name__)

TRIAL_ENDING_NOTICE = dt.timedelta(days=3)
RENEWAL_NOTICE = dt.timedelta(days=7)
WIN_BACK_AFTER = dt.timedelta(days=14)
WIN_BACK_WINDOW = dt.timedelta(days=7)
BATCH_SIZE = 100

# Subscriptions that will be charged again.
_CHARGING = (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


@dataclass
class NoticesResult:
    trial_ending: int = 0
    renewal_upcoming: int = 0
    card_expiring: int = 0
    win_back: int = 0
    failed: int = 0

    @property
    def sent(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self) if f.name != "failed")

    def __str__(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


@dataclass(frozen=True)
class _Notice:
    name: str
    due: Callable[[dt.datetime], QuerySet[Any]]
    dedupe_key: Callable[[Any], str]
    send: Callable[[Any, str, dt.datetime], OutboxMessage | None]


def notices_send(*, now: dt.datetime, batch_size: int = BATCH_SIZE) -> NoticesResult:
    """Send every notice due at ``now`` that has not been sent yet; how many of each were sent.

    A notice that fails is logged, counted in ``failed`` and left for the next run.
    """
    result = NoticesResult()
    for notice in _NOTICES:
        sent, failed = _notice_send_due(notice, now=now, batch_size=batch_size)
        setattr(result, notice.name, sent)
        result.failed += failed
    return result


def _notice_send_due(notice: _Notice, *, now: dt.datetime, batch_size: int) -> tuple[int, int]:
    sent = failed = 0
    after = 0
    while batch := list(notice.due(now).filter(pk__gt=after).order_by("pk")[:batch_size]):
        after = batch[-1].pk
        keys = {row.pk: notice.dedupe_key(row) for row in batch}
        # One query per batch leaves out what was sent before; the unique key still decides.
        done = set(
            OutboxMessage.objects.filter(dedupe_key__in=keys.values()).values_list(
                "dedupe_key", flat=True
            )
        )
        for row in batch:
            if keys[row.pk] in done:
                continue
            try:
                sent += _notice_send_one(notice, pk=row.pk, now=now)
            except Exception:
                failed += 1
                log.exception("billing.notice_failed", notice=notice.name, target=row.public_id)
    return sent, failed


def _notice_send_one(notice: _Notice, *, pk: int, now: dt.datetime) -> bool:
    with transaction.atomic(durable=True):
        row = (
            notice.due(now).select_for_update(skip_locked=True, of=("self",)).filter(pk=pk).first()
        )
        if row is None:  # no longer due, or another worker has it now
            return False
        if notice.send(row, notice.dedupe_key(row), now) is None:  # sent before
            return False
        audit_record(action="billing.notice_sent", target=row, details={"notice": notice.name})
    log.info("billing.notice_sent", notice=notice.name, target=row.public_id)
    return True


def _money(amount: int, price: Price) -> str:
    return Money(amount, price.currency).format()


def _card_text(subscription: Subscription) -> str:
    card = payment_method_default(customer=subscription.customer)
    return str(card) if card else ""


# --- Trial ending ---------------------------------------------------------------------------------------
def _trial_ending_due(now: dt.datetime) -> QuerySet[Subscription]:
    return Subscription.objects.filter(
        status=SubscriptionStatus.TRIALING,
        cancel_at_period_end=False,
        trial_end__gt=now,
        trial_end__lte=now + TRIAL_ENDING_NOTICE,
    ).select_related("customer", "price__plan", "scheduled_price__plan")


def _trial_end(subscription: Subscription) -> dt.datetime:
    # A trialing subscription always has a trial end (a constraint), the end of its period.
    return subscription.trial_end or subscription.current_period_end


def _trial_ending_key(subscription: Subscription) -> str:
    ends_at = _trial_end(subscription).isoformat()
    return f"billing_trial_ending:{subscription.public_id}:{ends_at}"


def _trial_ending_send(
    subscription: Subscription, dedupe_key: str, now: dt.datetime
) -> OutboxMessage | None:
    price = subscription.scheduled_price or subscription.price
    return email_send_template(
        to=subscription.customer.email,
        template="billing_trial_ending",
        context={
            **billing_links(),
            "plan": price.plan.name,
            "trial_ends_on": date_text(_trial_end(subscription)),
            "amount": _money(price.amount_for(subscription.seats_next), price),
            "free": price.amount == 0,
            "term": price_term(price),
            "card": _card_text(subscription),
        },
        dedupe_key=dedupe_key,
    )


# --- Upcoming annual renewal ----------------------------------------------------------------------------
def _renewal_upcoming_due(now: dt.datetime) -> QuerySet[Subscription]:
    yearly = Price.Interval.YEAR
    return (
        Subscription.objects.filter(
            status=SubscriptionStatus.ACTIVE,
            cancel_at_period_end=False,
            current_period_end__gt=now,
            current_period_end__lte=now + RENEWAL_NOTICE,
        )
        .filter(
            Q(scheduled_price__isnull=True, price__interval=yearly, price__amount__gt=0)
            | Q(scheduled_price__interval=yearly, scheduled_price__amount__gt=0)
        )
        .select_related("customer", "price__plan", "scheduled_price__plan")
    )


def _renewal_upcoming_key(subscription: Subscription) -> str:
    renews_at = subscription.current_period_end.isoformat()
    return f"billing_renewal_upcoming:{subscription.public_id}:{renews_at}"


def _renewal_upcoming_send(
    subscription: Subscription, dedupe_key: str, now: dt.datetime
) -> OutboxMessage | None:
    price = subscription.scheduled_price or subscription.price
    return email_send_template(
        to=subscription.customer.email,
        template="billing_renewal_upcoming",
        context={
            **billing_links(),
            "plan": price.plan.name,
            "renews_on": date_text(subscription.current_period_end),
            "amount": _money(price.amount_for(subscription.seats_next), price),
            "card": _card_text(subscription),
        },
        dedupe_key=dedupe_key,
    )


# --- Card expiring next month ---------------------------------------------------------------------------
def _next_month(now: dt.datetime) -> tuple[int, int]:
    return (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)


def _card_expiring_due(now: dt.datetime) -> QuerySet[PaymentMethod]:
    year, month = _next_month(now)
    charged_again = Subscription.objects.filter(
        Q(price__amount__gt=0) | Q(scheduled_price__amount__gt=0),
        customer=OuterRef("customer"),
        status__in=_CHARGING,
        cancel_at_period_end=False,
    )
    return (
        PaymentMethod.objects.filter(
            is_default=True, detached_at__isnull=True, exp_year=year, exp_month=month
        )
        .filter(Exists(charged_again))
        .select_related("customer")
    )


def _card_expiring_key(method: PaymentMethod) -> str:
    return f"billing_card_expiring:{method.public_id}:{method.exp_year:04d}-{method.exp_month:02d}"


def _card_expiring_send(
    method: PaymentMethod, dedupe_key: str, now: dt.datetime
) -> OutboxMessage | None:
    subscription = (
        Subscription.objects.filter(customer=method.customer, status__in=_CHARGING)
        .select_related("price__plan")
        .get()
    )
    expires = dt.date(method.exp_year, method.exp_month, 1)
    return email_send_template(
        to=method.customer.email,
        template="billing_card_expiring",
        context={
            **billing_links(),
            "card": str(method),
            "expires": f"{expires:%B %Y}",
            "plan": subscription.price.plan.name,
        },
        dedupe_key=dedupe_key,
    )


# --- Win-back (marketing) -------------------------------------------------------------------------------
def _win_back_due(now: dt.datetime) -> QuerySet[Subscription]:
    live = Subscription.objects.filter(customer=OuterRef("customer")).exclude(
        status__in=(SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED)
    )
    return (
        Subscription.objects.filter(
            status=SubscriptionStatus.CANCELED,
            ended_at__lte=now - WIN_BACK_AFTER,
            ended_at__gt=now - WIN_BACK_AFTER - WIN_BACK_WINDOW,
            customer__user__marketing_opt_out_at__isnull=True,
            customer__user__is_active=True,
        )
        .exclude(Exists(live))
        .select_related("customer__user", "price__plan")
    )


def _win_back_key(subscription: Subscription) -> str:
    return f"billing_win_back:{subscription.public_id}"


def _win_back_send(
    subscription: Subscription, dedupe_key: str, now: dt.datetime
) -> OutboxMessage | None:
    user = subscription.customer.user
    if user is None:  # a customer always has an owner (a constraint)
        return None
    token = marketing_unsubscribe_token(user=user)
    unsubscribe_url = absolute_url("web:email_unsubscribe", token)
    return email_send_template(
        to=subscription.customer.email,
        template="billing_win_back",
        context={
            "plan": subscription.price.plan.name,
            "ended_on": date_text(subscription.ended_at or now),
            "pricing_url": absolute_url("web:pricing"),
            "unsubscribe_url": unsubscribe_url,
        },
        dedupe_key=dedupe_key,
        # RFC 2369 and RFC 8058: mail clients offer a one-click unsubscribe that POSTs to the link.
        headers={
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


_NOTICES = (
    _Notice("trial_ending", _trial_ending_due, _trial_ending_key, _trial_ending_send),
    _Notice(
        "renewal_upcoming", _renewal_upcoming_due, _renewal_upcoming_key, _renewal_upcoming_send
    ),
    _Notice("card_expiring", _card_expiring_due, _card_expiring_key, _card_expiring_send),
    _Notice("win_back", _win_back_due, _win_back_key, _win_back_send),
)
