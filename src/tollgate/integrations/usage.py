"""Usage the operator's product reports, counted against the plan's limits.

Each reported event names a customer, a metric (a limit key of the catalog), a quantity and when
it happened. Its id is the reporter's: a resend is recognised and counted once. Metrics that reset
(``api_calls_per_month``) are summed per month of the customer's subscription, starting on its
anchor day; a late event lands in the month its timestamp belongs to. Level metrics (``projects``,
``seats``) keep one running level that each event moves up or down.

The events themselves are the record of every write (append-only, with the time received); the
totals are kept in the same transaction. When a total crosses 80% of the plan's limit in the
current month, the customer is emailed once and ``usage.limit_near`` is published.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F

from tollgate.billing.entitlements import Entitlements, entitlements_for_customer
from tollgate.billing.models import Customer
from tollgate.billing.periods import Period, period_number
from tollgate.catalog.models import Metric
from tollgate.catalog.selectors import metric_resets
from tollgate.core import clock, outbox
from tollgate.core.errors import ValidationFailed
from tollgate.core.events import event_publish
from tollgate.integrations.customers import CustomerRef
from tollgate.integrations.models import UsageEvent, UsageTotal
from tollgate.notifications.services import absolute_url, email_send_template

MAX_EVENTS = 1000
EVENT_ID_MAX_LENGTH = 255
MAX_QUANTITY = 10**12
# Events may be stamped a little ahead of our clock (the reporter's clock drifts).
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
LEVEL_PERIOD_START = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
NEAR_LIMIT_PERCENT = 80
CACHE_SECONDS = 300
OUTBOX_KIND = "integrations.usage_changed"


@dataclass(frozen=True, slots=True)
class UsageReport:
    """One reported event, as received (validated by :func:`usage_record`)."""

    event_id: str
    customer: CustomerRef
    metric: str
    quantity: int
    timestamp: dt.datetime


@dataclass(frozen=True, slots=True)
class UsageRecorded:
    accepted: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class Usage:
    """A customer's usage now: ``totals`` by metric, for the month that began at
    ``period.start`` (reset metrics) and their running level (level metrics)."""

    period: Period
    totals: Mapping[str, int]

    def used(self, metric: str) -> int:
        return self.totals.get(metric, 0)


# --- Periods ---------------------------------------------------------------------------------------
def usage_period(*, anchor: dt.datetime, at: dt.datetime) -> Period:
    """The month of usage containing ``at``, in the monthly schedule that starts at ``anchor``
    (earlier months too: a late event before the anchor lands in the month it belongs to)."""
    index = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    period = period_number(anchor=anchor, months=1, index=index)
    while period.start > at:
        index -= 1
        period = period_number(anchor=anchor, months=1, index=index)
    while period.end <= at:
        index += 1
        period = period_number(anchor=anchor, months=1, index=index)
    return period


def usage_anchor(customer: CustomerRef, entitlements: Entitlements) -> dt.datetime:
    return entitlements.usage_anchor or customer.created_at


# --- Recording --------------------------------------------------------------------------------------
def _invalid(index: int, field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"events[{index}].{field}: {message}", details={"field": f"events.{index}.{field}"}
    )


def _validate(reports: Sequence[UsageReport], now: dt.datetime) -> None:
    if not 1 <= len(reports) <= MAX_EVENTS:
        raise ValidationFailed(
            f"Send 1 to {MAX_EVENTS} events at a time.", details={"field": "events"}
        )
    resets = metric_resets()
    for index, report in enumerate(reports):
        event_id = report.event_id
        if not 1 <= len(event_id) <= EVENT_ID_MAX_LENGTH or not all(
            " " < char <= "~" for char in event_id
        ):
            raise _invalid(index, "id", "1 to 255 printable characters without spaces.")
        reset = resets.get(report.metric)
        if reset is None:
            raise _invalid(index, "metric", "not a limit key of the catalog.")
        if abs(report.quantity) > MAX_QUANTITY:
            raise _invalid(index, "quantity", f"at most {MAX_QUANTITY} in size.")
        if reset == Metric.Reset.PERIOD and report.quantity < 0:
            raise _invalid(index, "quantity", "usage of a metric that resets cannot be negative.")
        if report.timestamp.tzinfo is None:
            raise _invalid(index, "timestamp", "give a time zone (e.g. 2026-01-31T12:00:00Z).")
        if report.timestamp > now + FUTURE_TOLERANCE:
            raise _invalid(index, "timestamp", "is in the future.")


def usage_record(*, reports: Sequence[UsageReport]) -> UsageRecorded:
    """Record reported usage, once per (customer, event id): a resend counts as a duplicate and
    changes nothing. One transaction for the whole batch; totals move with their events. Refuses
    the whole batch (ValidationFailed, naming the event) if any event is invalid."""
    now = clock.now()
    _validate(reports, now)
    for _ in range(3):  # a concurrent batch with the same events or a new total: read again
        try:
            with transaction.atomic(durable=True):
                return _record(reports, now)
        except IntegrityError:
            continue
    raise ValidationFailed("The usage could not be recorded; send the same events again.")


def _record(reports: Sequence[UsageReport], now: dt.datetime) -> UsageRecorded:
    fresh = _unseen(reports)
    resets = metric_resets()
    rows: list[UsageEvent] = []
    entitlements: dict[int, Entitlements] = {}
    for report in fresh:
        customer = report.customer
        if customer.pk not in entitlements:
            entitlements[customer.pk] = entitlements_for_customer(customer_pk=customer.pk)
        if resets[report.metric] == Metric.Reset.LEVEL:
            start = LEVEL_PERIOD_START
        else:
            anchor = usage_anchor(customer, entitlements[customer.pk])
            start = usage_period(anchor=anchor, at=report.timestamp).start
        rows.append(
            UsageEvent(
                customer_id=customer.pk,
                event_id=report.event_id,
                metric=report.metric,
                quantity=report.quantity,
                timestamp=report.timestamp,
                period_start=start,
                received_at=now,
            )
        )
    UsageEvent.objects.bulk_create(rows)
    before, after = _totals_add(rows, now)
    customers = {report.customer.pk: report.customer for report in fresh}
    for (customer_pk, metric, start), total in sorted(after.items()):
        _limit_near_notify(
            customer=customers[customer_pk],
            entitlements=entitlements[customer_pk],
            metric=metric,
            period_start=start,
            before=before.get((customer_pk, metric, start), 0),
            after=total,
            now=now,
        )
    if customers:
        outbox.outbox_enqueue(
            kind=OUTBOX_KIND,
            payload={"customers": sorted(customers)},
            dedupe_key=f"{OUTBOX_KIND}:{secrets.token_hex(12)}",
        )
    return UsageRecorded(accepted=len(rows), duplicates=len(reports) - len(rows))


def _unseen(reports: Sequence[UsageReport]) -> list[UsageReport]:
    """The reports not recorded before, nor earlier in this batch."""
    wanted: dict[int, set[str]] = defaultdict(set)
    for report in reports:
        wanted[report.customer.pk].add(report.event_id)
    seen: set[tuple[int, str]] = set()
    for customer_pk, event_ids in wanted.items():
        seen.update(
            (customer_pk, event_id)
            for event_id in UsageEvent.objects.filter(
                customer_id=customer_pk, event_id__in=event_ids
            ).values_list("event_id", flat=True)
        )
    fresh: list[UsageReport] = []
    for report in reports:
        key = (report.customer.pk, report.event_id)
        if key not in seen:
            seen.add(key)
            fresh.append(report)
    return fresh


_TotalKey = tuple[int, str, dt.datetime]


def _totals_add(
    rows: Iterable[UsageEvent], now: dt.datetime
) -> tuple[dict[_TotalKey, int], dict[_TotalKey, int]]:
    """Add the events to their totals, locking the total rows in one order (customer, metric,
    month) so concurrent batches never deadlock. Returns the totals before and after."""
    sums: dict[_TotalKey, int] = defaultdict(int)
    for row in rows:
        sums[(row.customer_id, row.metric, row.period_start)] += row.quantity
    before: dict[_TotalKey, int] = {}
    after: dict[_TotalKey, int] = {}
    for key in sorted(sums):
        customer_pk, metric, start = key
        total = (
            UsageTotal.objects.select_for_update()
            .filter(customer_id=customer_pk, metric=metric, period_start=start)
            .first()
        )
        if total is None:
            end = None if start == LEVEL_PERIOD_START else _month_end(start)
            UsageTotal.objects.create(
                customer_id=customer_pk,
                metric=metric,
                period_start=start,
                period_end=end,
                quantity=sums[key],
                updated_at=now,
            )
            before[key], after[key] = 0, sums[key]
            continue
        UsageTotal.objects.filter(pk=total.pk).update(
            quantity=F("quantity") + sums[key], updated_at=now
        )
        before[key], after[key] = total.quantity, total.quantity + sums[key]
    return before, after


def _month_end(start: dt.datetime) -> dt.datetime:
    return period_number(anchor=start, months=1, index=0).end


def _limit_near_notify(
    *,
    customer: CustomerRef,
    entitlements: Entitlements,
    metric: str,
    period_start: dt.datetime,
    before: int,
    after: int,
    now: dt.datetime,
) -> None:
    """Once per month (or level) and metric: when usage crosses 80% of the plan's limit, tell the
    customer by email and the operator's product by ``usage.limit_near``."""
    limit = entitlements.limits.get(metric)
    if limit is None or limit < 0 or not entitlements.plan_code:
        return
    if period_start != LEVEL_PERIOD_START:
        current = usage_period(anchor=usage_anchor(customer, entitlements), at=now)
        if period_start != current.start:
            return  # a late event for a month that is over
    threshold = limit * NEAR_LIMIT_PERCENT  # compared as used * 100 to stay in integers
    if not (before * 100 < threshold <= after * 100) or limit == 0:
        return
    occurrence = f"{customer.public_id}:{metric}:{period_start.date().isoformat()}"
    event_publish(
        event_type="usage.limit_near",
        object_type="customer",
        object_id=customer.public_id,
        key=occurrence,
        extra={"metric": metric, "limit": limit, "used": after},
    )
    email = Customer.objects.filter(pk=customer.pk).values_list("email", flat=True).first()
    if email:
        metric_name = Metric.objects.filter(code=metric).values_list("name", flat=True).first()
        email_send_template(
            to=email,
            template="usage_limit_near",
            context={
                "metric": metric_name or metric,
                "used": f"{after:,}",
                "limit": f"{limit:,}",
                "plan": entitlements.plan_name,
                "pricing_url": absolute_url("web:pricing"),
                "dashboard_url": absolute_url("billing:dashboard"),
            },
            dedupe_key=f"usage_limit_near:{occurrence}",
        )


# --- Reading -----------------------------------------------------------------------------------------
def usage_cache_key(customer_pk: int) -> str:
    """Where a customer's usage is cached (for a caller that reads several keys at once)."""
    return f"integrations:usage:{customer_pk}"


def usage_cached_forget(payload: dict[str, Any]) -> None:
    """Outbox handler: drop the cached usage of the customers a batch touched (idempotent)."""
    cache.delete_many([usage_cache_key(int(pk)) for pk in payload["customers"]])


_NOT_READ = object()


def usage_current(
    *, customer: CustomerRef, entitlements: Entitlements, cached: object = _NOT_READ
) -> Usage:
    """The customer's usage in the current month and their levels (cached for every process;
    dropped after each recorded batch, and recomputed when a new month begins). ``cached`` is
    what the cache held, when the caller has read it already."""
    period = usage_period(anchor=usage_anchor(customer, entitlements), at=clock.now())
    key = usage_cache_key(customer.pk)
    if cached is _NOT_READ:
        cached = cache.get(key)
    if isinstance(cached, Usage) and cached.period == period:
        return cached
    resets = metric_resets()
    totals: dict[str, int] = {}
    for metric, start, quantity in UsageTotal.objects.filter(
        customer_id=customer.pk, period_start__in=[period.start, LEVEL_PERIOD_START]
    ).values_list("metric", "period_start", "quantity"):
        is_level = resets.get(metric) == Metric.Reset.LEVEL
        if is_level == (start == LEVEL_PERIOD_START):
            totals[metric] = quantity
    usage = Usage(period=period, totals=totals)
    cache.set(key, usage, CACHE_SECONDS)
    return usage
