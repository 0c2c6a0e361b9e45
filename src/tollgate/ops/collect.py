"""Gauges computed from the database by the worker, once a minute (never per scrape), and the
worker's heartbeat, which /readyz reads.

The gauges go to the shared cache as one snapshot (``metrics.SNAPSHOT_CACHE_KEY``) which web
processes read when scraped. Labelled gauges are written for their whole set of label values (zero
where nothing is counted), so a series that empties reads 0 rather than disappearing.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from fractions import Fraction

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Min, Q, Sum

from tollgate.billing.models import (
    SUBSCRIPTION_AMOUNT,
    Dispute,
    InboundEvent,
    Invoice,
    PaymentAttempt,
    ReconciliationRun,
    Refund,
    Subscription,
)
from tollgate.billing.states import InvoiceStatus, PaymentStatus, RefundStatus, SubscriptionStatus
from tollgate.catalog.models import Plan, Price
from tollgate.core import clock
from tollgate.core.models import OutboxMessage
from tollgate.ops import metrics

HEARTBEAT_CACHE_KEY = "ops:worker_heartbeat"
OVERDUE_AFTER = dt.timedelta(minutes=10)
INBOX_LAG_WINDOW = dt.timedelta(minutes=10)
_RENEWING = (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
_EARNING = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
_OPEN_DISPUTES = (
    Dispute.Status.WARNING_NEEDS_RESPONSE,
    Dispute.Status.WARNING_UNDER_REVIEW,
    Dispute.Status.NEEDS_RESPONSE,
    Dispute.Status.UNDER_REVIEW,
)
Samples = dict[str, list[tuple[tuple[str, ...], float]]]


def worker_heartbeat_record() -> float:
    """The worker checks in: the time goes to the shared cache, for /readyz."""
    now = time.time()
    cache.set(HEARTBEAT_CACHE_KEY, now, timeout=None)
    return now


def worker_last_seen() -> float | None:
    """When a worker last checked in (Unix time), or None when none has."""
    value = cache.get(HEARTBEAT_CACHE_KEY)
    return float(value) if isinstance(value, int | float) else None


def _rows(values: dict[tuple[str, ...], float]) -> list[tuple[tuple[str, ...], float]]:
    return sorted(values.items())


def _age_seconds(now: dt.datetime, oldest: dt.datetime | None) -> float:
    return max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0


def work_metrics_collect(*, now: dt.datetime) -> Samples:
    """Outbox and inbox backlogs, and how long inbound events waited to be processed."""
    outbox = OutboxMessage.objects.aggregate(
        pending=Count("pk", filter=Q(status=OutboxMessage.Status.PENDING)),
        failed=Count("pk", filter=Q(status=OutboxMessage.Status.FAILED)),
        oldest=Min("created_at", filter=Q(status=OutboxMessage.Status.PENDING)),
    )
    waiting = Q(status=InboundEvent.Status.RECEIVED) | Q(
        status=InboundEvent.Status.FAILED, next_attempt_at__isnull=False
    )
    inbox = InboundEvent.objects.filter(waiting).aggregate(n=Count("pk"), oldest=Min("received_at"))
    lag = InboundEvent.objects.filter(processed_at__gte=now - INBOX_LAG_WINDOW).aggregate(
        lag=Max(
            ExpressionWrapper(F("processed_at") - F("received_at"), output_field=DurationField())
        )
    )["lag"]
    return {
        "tollgate_outbox_pending_messages": [((), outbox["pending"])],
        "tollgate_outbox_failed_messages": [((), outbox["failed"])],
        "tollgate_outbox_oldest_pending_age_seconds": [((), _age_seconds(now, outbox["oldest"]))],
        "tollgate_inbox_pending_events": [((), inbox["n"])],
        "tollgate_inbox_oldest_pending_age_seconds": [((), _age_seconds(now, inbox["oldest"]))],
        "tollgate_inbox_lag_seconds": [((), max(lag.total_seconds(), 0.0) if lag else 0.0)],
    }


def monthly_amount(*, amount: int, interval: str, interval_count: int) -> Fraction:
    """A price's amount per month (a yearly price is a twelfth per month), exact."""
    months = interval_count * (12 if interval == Price.Interval.YEAR else 1)
    return Fraction(amount, months)


def _subscription_metrics(*, now: dt.datetime) -> Samples:
    plans = set(Plan.objects.values_list("code", flat=True))
    counts: dict[tuple[str, ...], float] = {
        (status, plan): 0 for status in SubscriptionStatus.values for plan in plans
    }
    rows = Subscription.objects.values_list("status", "price__plan__code").annotate(n=Count("pk"))
    for status, plan, n in rows:
        counts[(status, plan)] = n
    overdue = Subscription.objects.filter(
        status__in=_RENEWING, current_period_end__lt=now - OVERDUE_AFTER
    ).count()
    mrr: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    earning = (
        Subscription.objects.filter(status__in=_EARNING)
        .values_list(
            "price__plan__code",
            "price__currency",
            "price__interval",
            "price__interval_count",
        )
        .annotate(paying=Sum(SUBSCRIPTION_AMOUNT))
    )
    for plan, currency, interval, interval_count, amount in earning:
        mrr[(plan, currency)] += monthly_amount(
            amount=amount, interval=interval, interval_count=interval_count
        )
    return {
        "tollgate_billing_subscriptions": _rows(counts),
        "tollgate_billing_subscriptions_overdue": [((), overdue)],
        "tollgate_billing_mrr_minor_units": _rows(
            {labels: round(value) for labels, value in mrr.items()}
        ),
    }


def _payment_metrics(*, now: dt.datetime) -> Samples:
    since = now - dt.timedelta(hours=1)
    gateways = {settings.PAYMENT_GATEWAY}
    payments: dict[tuple[str, ...], float] = {}
    rows = (
        PaymentAttempt.objects.filter(created_at__gte=since)
        .values_list("gateway", "status")
        .annotate(n=Count("pk"))
    )
    for gateway, status, n in rows:
        gateways.add(gateway)
        payments[(gateway, status)] = n
    for gateway in gateways:
        for status in PaymentStatus.values:
            payments.setdefault((gateway, status), 0)
    refunds: dict[tuple[str, ...], float] = {(status,): 0 for status in RefundStatus.values}
    for status, n in (
        Refund.objects.filter(created_at__gte=since).values_list("status").annotate(n=Count("pk"))
    ):
        refunds[(status,)] = n
    return {
        "tollgate_billing_payments_last_hour": _rows(payments),
        "tollgate_billing_refunds_last_hour": _rows(refunds),
    }


def _dunning_metrics() -> Samples:
    last_stage = len(settings.BILLING_DUNNING_RETRY_DAYS) + 1
    stages: dict[tuple[str, ...], float] = {(str(n),): 0 for n in range(last_stage + 1)}
    failed_attempts = (
        Invoice.objects.filter(
            status=InvoiceStatus.OPEN, subscription__status=SubscriptionStatus.PAST_DUE
        )
        .annotate(failed=Count("payments", filter=Q(payments__status=PaymentStatus.FAILED)))
        .values_list("failed", flat=True)
    )
    for failed in failed_attempts:
        stages[(str(min(failed, last_stage)),)] += 1
    return {"tollgate_billing_dunning_invoices": _rows(stages)}


def _risk_metrics() -> Samples:
    mismatches: dict[tuple[str, ...], float] = {}
    finished = ReconciliationRun.objects.filter(status=ReconciliationRun.Status.COMPLETED)
    for gateway in finished.values_list("gateway", flat=True).distinct():
        latest = finished.filter(gateway=gateway).order_by("-finished_at", "-pk").first()
        if latest is not None:
            mismatches[(gateway,)] = latest.mismatched_count + latest.unresolved_count
    disputes = Dispute.objects.filter(status__in=_OPEN_DISPUTES).count()
    return {
        "tollgate_billing_reconciliation_mismatches": _rows(mismatches),
        "tollgate_billing_disputes_open": [((), disputes)],
    }


def business_metrics_collect(*, now: dt.datetime) -> Samples:
    """Subscriptions, MRR, recent payments and refunds, dunning, reconciliation and disputes."""
    return {
        **_subscription_metrics(now=now),
        **_payment_metrics(now=now),
        **_dunning_metrics(),
        **_risk_metrics(),
    }


def metrics_collect() -> Samples:
    """The worker's minute: check in, compute the work and business gauges, and leave them in the
    shared cache for the web processes to report."""
    heartbeat = worker_heartbeat_record()
    now = clock.now()
    samples: Samples = {
        "tollgate_worker_heartbeat_timestamp_seconds": [((), heartbeat)],
        **work_metrics_collect(now=now),
        **business_metrics_collect(now=now),
    }
    cache.set(metrics.SNAPSHOT_CACHE_KEY, samples, timeout=None)
    return samples
