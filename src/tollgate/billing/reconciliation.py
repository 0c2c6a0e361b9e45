"""Reconciliation: Tollgate's payments and refunds, and their ledger postings, compared with the
gateway's own list of transactions for a time window.

Tollgate is the source of truth for what is owed; the gateway for what money moved. For a window
``[since, until)`` the gateway lists its charges and refunds (``Gateway.transactions_list``); they
are matched with Tollgate's records by idempotency key (a payment attempt's key, a refund's public
id), and Tollgate's own records of the window that the list does not show are asked about by key:

- both sides agree: checked; a captured payment and a succeeded refund must also be posted to the
  ledger with their amount;
- Tollgate still waits for an outcome the gateway already has (a payment pending, unknown or
  awaiting authentication, a refund pending: a lost event, a timeout, a crash): **healed** through
  the billing services (``payment_reconcile``, ``refund_reconcile``), which take the row locks, ask
  the gateway by key and record its answer, post to the ledger, audit and email exactly as the
  normal path does. Only records the gateway has a transaction for are healed, so the services
  record an outcome and never send anything;
- they disagree (amount, currency, captured on one side only, gateway reference): a **mismatch**,
  reported and never overwritten (a disagreeing record is not healed either);
- a transaction on one side only is a mismatch too: ``missing_locally`` (the gateway moved money
  Tollgate has no record of) or ``missing_at_gateway`` (Tollgate records an outcome the gateway
  does not know). A request Tollgate still has pending that the gateway never received is
  **unresolved**: the billing clock sends it again under the same key; reconciliation sends
  nothing.

Besides the window, payments and refunds still waiting for an outcome from before it are asked
about by key, so an old ``unknown`` outcome is resolved too.

Each run is stored as a :class:`ReconciliationRun` (window, counts, details) and audited, and so is
each heal (besides the services' own audit of the outcome). A second run over the same window heals
nothing more and reports the same mismatches.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import structlog
from django.db import transaction
from django.db.models import Model, QuerySet, Sum

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing import services
from tollgate.billing.conf import billing_settings
from tollgate.billing.gateways.base import (
    ChargeStatus,
    Gateway,
    GatewayUnavailable,
    RefundOutcome,
    TransactionKind,
)
from tollgate.billing.gateways.registry import gateway_get
from tollgate.billing.models import (
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    PaymentAttempt,
    ReconciliationRun,
    Refund,
)
from tollgate.billing.reconciliation_findings import Findings, MismatchKind, Seen
from tollgate.billing.states import PaymentStatus, RefundStatus
from tollgate.core import clock
from tollgate.core.errors import ValidationFailed

log = structlog.get_logger(__name__)

Progress = Callable[[int, int], object]  # (items done, items in the run)

_KEYS_PER_QUERY = 500
# Payment statuses an outcome at the gateway can still settle.
_AWAITING = frozenset({PaymentStatus.PENDING, PaymentStatus.UNKNOWN, PaymentStatus.REQUIRES_ACTION})
_NOT_SENT_YET = frozenset({PaymentStatus.PENDING, PaymentStatus.UNKNOWN})
_CHARGE_STATUSES = frozenset(status.value for status in ChargeStatus)
_REFUND_STATUSES = frozenset(status.value for status in RefundOutcome)
_Row = TypeVar("_Row", bound=Model)
_Settled = TypeVar("_Settled", PaymentAttempt, Refund)
_NOT_RECEIVED = "not received by the gateway; the billing clock sends it again under its key"
_UNREACHABLE = "the gateway could not be asked about it; asked again next run"
_NOT_SETTLED = (
    "asking the gateway by key did not settle it (unreachable, or its answer differs from its "
    "list); asked again next run"
)


def reconciliation_run(
    *,
    since: dt.datetime,
    until: dt.datetime | None = None,
    actor: User | None = None,
    on_progress: Progress | None = None,
) -> ReconciliationRun:
    """Reconcile the configured gateway's transactions of ``[since, until)`` (default until: now)
    with Tollgate's payments, refunds and ledger, and return the stored run.

    Guarantees: money never moves (the gateway is only read; heals record what it already did);
    a record that disagrees with the gateway is reported, never changed; heals go through the
    billing services (row locks, ledger, audit, emails as on the normal path) and are audited with
    the run; running it again heals nothing more. Runs may overlap (the daily task and a manual
    one): the services lock each record and ignore an outcome they already know. When the gateway
    cannot list its transactions the run ends ``failed`` with the error kept.
    """
    end = until or clock.now()
    if since.tzinfo is None or end.tzinfo is None:
        raise ValidationFailed("The window needs times with a time zone.")
    if since >= end:
        raise ValidationFailed("The window must start before it ends.")
    gateway = gateway_get()
    with transaction.atomic(durable=True):
        run = ReconciliationRun.objects.create(
            gateway=gateway.name, window_start=since, window_end=end, actor=actor
        )
    findings = Findings()
    try:
        _Reconciler(
            gateway=gateway,
            run=run,
            findings=findings,
            actor=actor,
            progress=on_progress or (lambda done, total: None),
        ).reconcile()
    except GatewayUnavailable as exc:
        log.warning("billing.reconciliation_gateway_unavailable", run=run.public_id)
        return _finish(run, findings, actor=actor, error=f"The gateway could not be reached: {exc}")
    except Exception as exc:
        log.exception("billing.reconciliation_failed", run=run.public_id)
        _finish(run, findings, actor=actor, error=f"{type(exc).__name__}: {exc}")
        raise
    return _finish(run, findings, actor=actor)


def reconciliation_daily() -> ReconciliationRun:
    """The daily run: the last ``TOLLGATE_RECONCILIATION_DAYS`` days up to now (overlapping the
    previous runs, so a day the worker was down is still covered)."""
    now = clock.now()
    return reconciliation_run(since=now - billing_settings().reconciliation_window, until=now)


def reconciliation_due(moment: dt.datetime) -> bool:
    """The daily schedule, asked by the worker every minute: on the hour set by
    ``TOLLGATE_RECONCILIATION_HOUR`` (UTC)."""
    return moment.minute == 0 and moment.hour == billing_settings().reconciliation_hour


def _finish(
    run: ReconciliationRun, findings: Findings, *, actor: User | None, error: str = ""
) -> ReconciliationRun:
    with transaction.atomic(durable=True):
        current = ReconciliationRun.objects.select_for_update().get(pk=run.pk)
        current.status = (
            ReconciliationRun.Status.FAILED if error else ReconciliationRun.Status.COMPLETED
        )
        current.checked_count = findings.checked
        current.healed_count = len(findings.heals)
        current.mismatched_count = len(findings.mismatches)
        current.unresolved_count = len(findings.unresolved)
        current.heals = findings.heals
        current.mismatches = findings.mismatches
        current.unresolved = findings.unresolved
        current.error = error
        current.finished_at = clock.now()
        current.save()
        audit_record(
            action=f"billing.reconciliation_{current.status}",
            actor=actor,
            target=current,
            details={
                "gateway": current.gateway,
                "window_start": current.window_start.isoformat(),
                "window_end": current.window_end.isoformat(),
                "checked": current.checked_count,
                "healed": current.healed_count,
                "mismatched": current.mismatched_count,
                "unresolved": current.unresolved_count,
            },
        )
    return current


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _KEYS_PER_QUERY):
        yield items[start : start + _KEYS_PER_QUERY]


def _by_key(queryset: QuerySet[_Row], key_field: str, keys: Iterable[str]) -> dict[str, _Row]:
    """The rows of ``queryset`` whose ``key_field`` is one of ``keys``, by that key."""
    found: dict[str, _Row] = {}
    for chunk in _chunks(sorted(keys)):
        for row in queryset.filter(**{f"{key_field}__in": chunk}):
            found[getattr(row, key_field)] = row
    return found


class _Reconciler:
    def __init__(
        self,
        *,
        gateway: Gateway,
        run: ReconciliationRun,
        findings: Findings,
        actor: User | None,
        progress: Progress,
    ) -> None:
        self.gateway = gateway
        self.run = run
        self.findings = findings
        self.actor = actor
        self.progress = progress
        self.captured: list[PaymentAttempt] = []  # settled as captured here: checked in the ledger
        self.refunded: list[Refund] = []

    def reconcile(self) -> None:
        start, end = self.run.window_start, self.run.window_end
        listed = self.gateway.transactions_list(since=start, until=end)
        charges = {
            item.idempotency_key: item for item in listed if item.kind == TransactionKind.CHARGE
        }
        refunds = {
            item.idempotency_key: item for item in listed if item.kind == TransactionKind.REFUND
        }
        payments = _by_key(self._payments(), "idempotency_key", charges)
        local_refunds = _by_key(self._refunds(), "public_id", refunds)
        # Tollgate's records of the window the list does not show (attempts without a card never
        # reached the gateway), and those still waiting for an outcome from before the window.
        payments_only_here = [
            payment
            for payment in self._payments()
            .filter(created_at__gte=start, created_at__lt=end, payment_method__isnull=False)
            .order_by("created_at", "pk")
            if payment.idempotency_key not in charges
        ]
        refunds_only_here = [
            refund
            for refund in self._refunds()
            .filter(created_at__gte=start, created_at__lt=end)
            .order_by("created_at", "pk")
            if refund.public_id not in refunds
        ]
        # An earlier attempt can have its transaction in the window (a customer who authenticated
        # days later): it is checked once, as listed.
        earlier_payments = [
            payment
            for payment in self._payments()
            .filter(status__in=sorted(_AWAITING), created_at__lt=start)
            .order_by("created_at", "pk")
            if payment.idempotency_key not in charges
        ]
        earlier_refunds = [
            refund
            for refund in self._refunds()
            .filter(status=RefundStatus.PENDING, created_at__lt=start)
            .order_by("created_at", "pk")
            if refund.public_id not in refunds
        ]
        total = (
            len(charges)
            + len(refunds)
            + len(payments_only_here)
            + len(refunds_only_here)
            + len(earlier_payments)
            + len(earlier_refunds)
        )
        done = 0
        self.progress(done, total)
        for key, item in charges.items():
            self._payment(payments.get(key), Seen.listed(item), key=key)
            done += 1
            self.progress(done, total)
        for key, item in refunds.items():
            self._refund(local_refunds.get(key), Seen.listed(item), key=key)
            done += 1
            self.progress(done, total)
        for payment in [*payments_only_here, *earlier_payments]:
            try:
                found = self.gateway.charge_lookup(idempotency_key=payment.idempotency_key)
            except GatewayUnavailable:
                self.findings.unresolvable(
                    kind_of_record="payment", record=payment, why=_UNREACHABLE
                )
            else:
                seen = Seen.looked_up(found) if found is not None else None
                self._payment(payment, seen, key=payment.idempotency_key)
            done += 1
            self.progress(done, total)
        for refund in [*refunds_only_here, *earlier_refunds]:
            try:
                found_refund = self.gateway.refund_lookup(idempotency_key=refund.public_id)
            except GatewayUnavailable:
                self.findings.unresolvable(kind_of_record="refund", record=refund, why=_UNREACHABLE)
            else:
                seen = Seen.looked_up(found_refund) if found_refund is not None else None
                self._refund(refund, seen, key=refund.public_id)
            done += 1
            self.progress(done, total)
        self.findings.checked = done
        self._check_ledger()

    def _payments(self) -> QuerySet[PaymentAttempt]:
        return PaymentAttempt.objects.filter(gateway=self.gateway.name).select_related(
            "payment_method"
        )

    def _refunds(self) -> QuerySet[Refund]:
        return Refund.objects.filter(payment__gateway=self.gateway.name).select_related("payment")

    # --- Payments ---------------------------------------------------------------------------------
    def _payment(self, payment: PaymentAttempt | None, seen: Seen | None, *, key: str) -> None:
        findings = self.findings
        if payment is None:
            findings.mismatch(
                MismatchKind.MISSING_LOCALLY, kind_of_record="payment", key=key, seen=seen
            )
            return
        if seen is None:
            if payment.status in _NOT_SENT_YET:
                findings.unresolvable(
                    kind_of_record="payment",
                    record=payment,
                    why=_NOT_RECEIVED,
                )
            else:
                findings.mismatch(
                    MismatchKind.MISSING_AT_GATEWAY,
                    kind_of_record="payment",
                    key=key,
                    record=payment,
                )
            return
        if self._disagrees(payment, seen, kind_of_record="payment", known=_CHARGE_STATUSES):
            return
        awaiting = payment.status in _AWAITING
        if not awaiting and (payment.status == PaymentStatus.SUCCEEDED) != (
            seen.status == ChargeStatus.SUCCEEDED
        ):
            # Captured on one side only (a failure here the gateway later took, or the reverse).
            findings.mismatch(
                MismatchKind.STATUS, kind_of_record="payment", key=key, record=payment, seen=seen
            )
            return
        if awaiting and seen.status != payment.status:
            payment = self._heal(
                payment,
                seen,
                key=key,
                kind_of_record="payment",
                reconcile=lambda record: services.payment_reconcile(
                    payment=record, actor=self.actor
                ),
            )
        if payment.status == PaymentStatus.SUCCEEDED:
            self.captured.append(payment)

    # --- Refunds ----------------------------------------------------------------------------------
    def _refund(self, refund: Refund | None, seen: Seen | None, *, key: str) -> None:
        findings = self.findings
        if refund is None:
            findings.mismatch(
                MismatchKind.MISSING_LOCALLY, kind_of_record="refund", key=key, seen=seen
            )
            return
        if seen is None:
            if refund.status == RefundStatus.PENDING:
                findings.unresolvable(
                    kind_of_record="refund",
                    record=refund,
                    why=_NOT_RECEIVED,
                )
            else:
                findings.mismatch(
                    MismatchKind.MISSING_AT_GATEWAY, kind_of_record="refund", key=key, record=refund
                )
            return
        if self._disagrees(refund, seen, kind_of_record="refund", known=_REFUND_STATUSES):
            return
        if refund.status == RefundStatus.PENDING:
            refund = self._heal(
                refund,
                seen,
                key=key,
                kind_of_record="refund",
                reconcile=lambda record: services.refund_reconcile(refund=record, actor=self.actor),
            )
        elif refund.status != seen.status:
            findings.mismatch(
                MismatchKind.STATUS, kind_of_record="refund", key=key, record=refund, seen=seen
            )
            return
        if refund.status == RefundStatus.SUCCEEDED:
            self.refunded.append(refund)

    def _heal(
        self,
        record: _Settled,
        seen: Seen,
        *,
        key: str,
        kind_of_record: str,
        reconcile: Callable[[_Settled], _Settled],
    ) -> _Settled:
        """Record the gateway's outcome of ``record`` through its service (``reconcile``); a
        failure is reported, an outcome the gateway does not have yet is left for the next run."""
        before = record.status
        try:
            healed = reconcile(record)
        except Exception as exc:
            log.exception(
                "billing.reconciliation_heal_failed", **{kind_of_record: record.public_id}
            )
            self.findings.mismatch(
                MismatchKind.HEAL_FAILED,
                kind_of_record=kind_of_record,
                key=key,
                record=record,
                seen=seen,
                detail=type(exc).__name__,
            )
            return record
        if healed.status == before:
            self.findings.unresolvable(
                kind_of_record=kind_of_record, record=healed, why=_NOT_SETTLED
            )
            return healed
        self._healed(kind_of_record, healed, before=before)
        return healed

    # --- Both -------------------------------------------------------------------------------------
    def _disagrees(
        self,
        record: PaymentAttempt | Refund,
        seen: Seen,
        *,
        kind_of_record: str,
        known: frozenset[str],
    ) -> bool:
        """Report every way ``record`` and the gateway's view of it disagree; True if any."""
        key = record.idempotency_key if isinstance(record, PaymentAttempt) else record.public_id
        problems: list[tuple[MismatchKind, str]] = []
        if seen.amount is not None and seen.amount != record.amount:
            problems.append((MismatchKind.AMOUNT, ""))
        if seen.currency is not None and seen.currency != record.currency:
            problems.append((MismatchKind.CURRENCY, ""))
        # What the gateway's balance moved, against what the ledger says moved (the record's
        # amount); reported only when the gateway's own amount agrees (else that is the mismatch).
        if (
            not problems
            and seen.settled_amount is not None
            and (seen.settled_amount != record.amount or seen.settled_currency != record.currency)
        ):
            problems.append((MismatchKind.SETTLEMENT, "the gateway's balance moved another amount"))
        if record.gateway_reference and seen.reference != record.gateway_reference:
            problems.append((MismatchKind.REFERENCE, ""))
        if seen.status not in known:
            problems.append((MismatchKind.STATUS, f"unknown gateway status {seen.status!r}"))
        for kind, detail in problems:
            self.findings.mismatch(
                kind,
                kind_of_record=kind_of_record,
                key=key,
                record=record,
                seen=seen,
                detail=detail,
            )
        return bool(problems)

    def _healed(self, kind_of_record: str, record: PaymentAttempt | Refund, *, before: str) -> None:
        heal = {
            "object": kind_of_record,
            "id": record.public_id,
            "from": before,
            "to": record.status,
            "reference": record.gateway_reference,
        }
        self.findings.heals.append(heal)
        with transaction.atomic(durable=True):
            audit_record(
                action="billing.reconciliation_healed",
                actor=self.actor,
                target=record,
                details={"run": self.run.public_id, "from": before, "to": record.status},
            )

    def _check_ledger(self) -> None:
        """Every payment found captured must be posted to the ledger with its amount (money the
        gateway holds), and every succeeded refund with its own."""
        posted = self._posted(
            LedgerTransaction.Kind.PAYMENT_CAPTURED,
            "transaction__payment_id",
            LedgerAccount.GATEWAY_CLEARING,
            [payment.pk for payment in self.captured],
        )
        for payment in self.captured:
            self._posting_matches(payment, posted.get(payment.pk, 0), "payment")
        posted = self._posted(
            LedgerTransaction.Kind.REFUND_SUCCEEDED,
            "transaction__refund_id",
            LedgerAccount.REFUNDS,
            [refund.pk for refund in self.refunded],
        )
        for refund in self.refunded:
            self._posting_matches(refund, posted.get(refund.pk, 0), "refund")

    @staticmethod
    def _posted(
        kind: LedgerTransaction.Kind, owner: str, account: LedgerAccount, ids: list[int]
    ) -> dict[int, int]:
        posted: dict[int, int] = {}
        for start in range(0, len(ids), _KEYS_PER_QUERY):
            rows = (
                LedgerEntry.objects.filter(
                    transaction__kind=kind,
                    account=account,
                    **{f"{owner}__in": ids[start : start + _KEYS_PER_QUERY]},
                )
                .order_by()
                .values(owner)
                .annotate(total=Sum("amount"))
            )
            posted |= {row[owner]: row["total"] or 0 for row in rows}
        return posted

    def _posting_matches(
        self, record: PaymentAttempt | Refund, posted: int, kind_of_record: str
    ) -> None:
        if posted == record.amount:
            return
        key = record.idempotency_key if isinstance(record, PaymentAttempt) else record.public_id
        self.findings.mismatch(
            MismatchKind.LEDGER,
            kind_of_record=kind_of_record,
            key=key,
            record=record,
            detail=f"posted to the ledger: {posted} {record.currency}, expected {record.amount}",
        )
