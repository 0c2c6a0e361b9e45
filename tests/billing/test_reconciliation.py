"""Reconciliation with the (offline) sandbox gateway: heals what Tollgate missed, reports what
disagrees and never overwrites it, stores and audits every run.

Where a test needs the gateway to disagree with Tollgate, it changes the sandbox's own records (the
processor's side, outside Tollgate's control), never Tollgate's code.
"""

from __future__ import annotations

import datetime as dt

import pgtrigger
import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import override_settings

from tests.billing.conftest import (
    CARD_OK,
    CARD_REQUIRES_AUTHENTICATION,
    CARD_TIMES_OUT,
    add_card,
    new_key,
)
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.gateways import registry
from tollgate.billing.gateways.base import (
    ChargeRequest,
    GatewayRequestRefused,
    GatewayTransaction,
    GatewayUnavailable,
    RefundRequest,
)
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.billing.gateways.sandbox.models import SandboxCharge, SandboxRefund
from tollgate.billing.integrity import ledger_check
from tollgate.billing.locks import lock_invoice
from tollgate.billing.models import (
    Invoice,
    LedgerEntry,
    LedgerTransaction,
    PaymentAttempt,
    ReconciliationRun,
    Refund,
    Subscription,
)
from tollgate.billing.periods import Period
from tollgate.billing.reconciliation import (
    reconciliation_daily,
    reconciliation_due,
    reconciliation_run,
)
from tollgate.billing.states import InvoiceStatus, PaymentStatus, RefundStatus, SubscriptionStatus
from tollgate.billing.steps.payments import payment_begin_locked
from tollgate.billing.tasks import reconciliation_daily_task
from tollgate.core import clock
from tollgate.core.errors import ValidationFailed

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2025, 6, 2, 12, tzinfo=dt.UTC)
SINCE = NOW - dt.timedelta(days=1)
UNTIL = NOW + dt.timedelta(hours=1)


def subscribe(customer, price, card=CARD_OK):
    """The customer saves ``card`` and starts paying for Pro at once (no trial), at NOW."""
    with clock.frozen(NOW):
        add_card(customer, card)
        return services.subscription_start(
            customer=customer, price=price("pro"), trial=False, idempotency_key=new_key()
        )


def reconcile(**options):
    with clock.frozen(UNTIL):
        return reconciliation_run(since=options.pop("since", SINCE), until=UNTIL, **options)


def kinds(run):
    return sorted((item["kind"], item["object"]) for item in run.mismatches)


def test_a_charge_that_succeeded_at_the_gateway_while_tollgate_recorded_unknown_is_healed(
    customer, price, django_capture_on_commit_callbacks
):
    subscription = subscribe(customer, price, CARD_TIMES_OUT)  # charged, but the answer was lost
    payment = PaymentAttempt.objects.get()
    assert (payment.status, subscription.status) == ("unknown", "incomplete")
    assert SandboxCharge.objects.get().status == "succeeded"

    with django_capture_on_commit_callbacks(execute=True):
        run = reconcile()

    payment.refresh_from_db()
    subscription.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.gateway_reference == SandboxCharge.objects.get().reference
    assert Invoice.objects.get().status == InvoiceStatus.PAID
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert ledger_check().ok
    assert (run.status, run.checked_count, run.healed_count, run.mismatched_count) == (
        "completed",
        1,
        1,
        0,
    )
    assert run.heals == [
        {
            "object": "payment",
            "id": payment.public_id,
            "from": "unknown",
            "to": "succeeded",
            "reference": payment.gateway_reference,
        }
    ]
    healed = AuditEvent.objects.get(action="billing.reconciliation_healed")
    assert (healed.target_id, healed.details["run"]) == (payment.public_id, run.public_id)
    assert AuditEvent.objects.filter(action="billing.payment_succeeded").count() == 1
    assert AuditEvent.objects.get(action="billing.reconciliation_completed").target_id == (
        run.public_id
    )
    assert "receipt" in mail.outbox[-1].subject.lower()
    assert SandboxCharge.objects.count() == 1  # nothing was charged again


def test_an_amount_that_differs_at_the_gateway_is_reported_and_not_overwritten(customer, price):
    subscribe(customer, price)
    payment = PaymentAttempt.objects.get()
    SandboxCharge.objects.update(amount=3100)  # the processor recorded another amount

    run = reconcile()

    assert (run.healed_count, run.mismatched_count) == (0, 1)
    [mismatch] = run.mismatches
    assert mismatch["kind"] == "amount"
    assert mismatch["id"] == payment.public_id
    assert mismatch["tollgate"]["amount"] == 2900
    assert mismatch["gateway"]["amount"] == 3100
    payment.refresh_from_db()
    assert (payment.amount, payment.status) == (2900, PaymentStatus.SUCCEEDED)
    assert ledger_check().ok


def test_an_unknown_payment_whose_amount_differs_is_reported_and_left_unknown(customer, price):
    subscribe(customer, price, CARD_TIMES_OUT)
    SandboxCharge.objects.update(amount=100, currency="EUR")

    run = reconcile()

    assert kinds(run) == [("amount", "payment"), ("currency", "payment")]
    assert run.healed_count == 0
    assert PaymentAttempt.objects.get().status == PaymentStatus.UNKNOWN


def test_a_second_run_heals_nothing_more_and_reports_the_same_mismatches(customer, price):
    subscribe(customer, price, CARD_TIMES_OUT)
    with clock.frozen(NOW):
        # Money the gateway moved that Tollgate has no record of (charged from its dashboard).
        gateway = SandboxGateway()
        session = gateway.setup_start(
            customer_reference=customer.gateway_reference, return_url="https://t.test/"
        )
        card = gateway.setup_submit(
            session_reference=session.reference, number=CARD_OK, exp_month=12, exp_year=2099
        ).card
        gateway.charge(
            request=ChargeRequest(
                customer_reference=customer.gateway_reference,
                payment_method_token=card.token,
                amount=500,
                currency="USD",
                idempotency_key="made-in-the-dashboard",
                off_session=True,
            )
        )

    first = reconcile()
    second = reconcile()

    assert (first.healed_count, first.mismatched_count) == (1, 1)
    assert (second.healed_count, second.mismatched_count, second.checked_count) == (0, 1, 2)
    assert kinds(second) == [("missing_locally", "payment")]
    assert second.mismatches[0]["idempotency_key"] == "made-in-the-dashboard"
    assert AuditEvent.objects.filter(action="billing.reconciliation_healed").count() == 1
    assert ReconciliationRun.objects.count() == 2
    assert ledger_check().ok


def test_a_pending_refund_the_gateway_completed_is_healed_with_its_ledger_posting(
    customer, price, staff
):
    subscribe(customer, price)
    payment = PaymentAttempt.objects.get()
    with clock.frozen(NOW), transaction.atomic():
        # A refund reserved and committed; the worker died after the gateway refunded it.
        PaymentAttempt.objects.filter(pk=payment.pk).update(amount_refunded=900)
        refund = Refund.objects.create(
            payment=payment,
            amount=900,
            currency="USD",
            reason=Refund.Reason.REQUESTED_BY_CUSTOMER,
            note="asked by phone",
            idempotency_key="refund-1",
            request_fingerprint="f",
            actor=staff,
        )
    with clock.frozen(NOW):
        SandboxGateway().refund(
            request=RefundRequest(
                charge_reference=payment.gateway_reference,
                amount=900,
                currency="USD",
                idempotency_key=refund.public_id,
            )
        )
    refunded = LedgerTransaction.objects.filter(kind=LedgerTransaction.Kind.REFUND_SUCCEEDED)
    assert not refunded.exists()  # the refund happened; the books do not know it yet

    run = reconcile(actor=staff)

    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert refunded.get().refund == refund
    assert ledger_check().ok
    assert run.heals[0] | {"reference": ""} == {
        "object": "refund",
        "id": refund.public_id,
        "from": "pending",
        "to": "succeeded",
        "reference": "",
    }
    assert run.actor == staff
    assert AuditEvent.objects.get(action="billing.reconciliation_healed").actor == staff
    assert reconcile().healed_count == 0


def test_records_on_one_side_only_are_reported(customer, price, staff):
    subscribe(customer, price)
    payment = PaymentAttempt.objects.get()
    with clock.frozen(NOW):
        refund = services.refund_issue(
            payment=payment,
            amount=400,
            reason=Refund.Reason.OTHER,
            note="goodwill",
            actor=staff,
            idempotency_key="goodwill",
        )
        # A refund made at the gateway directly (its dashboard): Tollgate has no record of it.
        SandboxGateway().refund(
            request=RefundRequest(
                charge_reference=payment.gateway_reference,
                amount=100,
                currency="USD",
                idempotency_key="dashboard-refund",
            )
        )
    # The processor lost the refund Tollgate made (its records were restored from a backup).
    SandboxRefund.objects.filter(idempotency_key=refund.public_id).delete()

    run = reconcile()

    assert kinds(run) == [("missing_at_gateway", "refund"), ("missing_locally", "refund")]
    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED  # reported, not changed


def test_a_captured_payment_the_gateway_does_not_know_is_reported(customer, price):
    subscribe(customer, price)
    SandboxCharge.objects.all().delete()

    run = reconcile()

    assert kinds(run) == [("missing_at_gateway", "payment")]
    assert PaymentAttempt.objects.get().status == PaymentStatus.SUCCEEDED


def test_a_payment_the_gateway_never_received_is_unresolved_and_never_sent(customer, price):
    subscription = subscribe(customer, price)
    with clock.frozen(NOW):
        invoice = services.invoice_create_for_period(
            subscription=subscription,
            period=Period(
                start=subscription.current_period_end,
                end=subscription.current_period_end + dt.timedelta(days=30),
            ),
        )
        with transaction.atomic():
            # A worker records the attempt and dies before the request leaves.
            pending = payment_begin_locked(
                locks=lock_invoice(invoice), gateway_name="sandbox", off_session=True, actor=None
            ).payment

    run = reconcile()

    assert (run.unresolved_count, run.mismatched_count, run.healed_count) == (1, 0, 0)
    assert run.unresolved[0]["id"] == pending.public_id
    pending.refresh_from_db()
    assert pending.status == PaymentStatus.PENDING
    assert not SandboxCharge.objects.filter(idempotency_key=pending.idempotency_key).exists()


def test_an_unknown_outcome_from_before_the_window_is_resolved_too(customer, price):
    subscribe(customer, price, CARD_TIMES_OUT)

    run = reconcile(since=NOW + dt.timedelta(minutes=30))

    assert run.healed_count == 1
    assert PaymentAttempt.objects.get().status == PaymentStatus.SUCCEEDED


def test_a_payment_failed_here_but_captured_at_the_gateway_is_a_status_mismatch(customer, price):
    subscribe(customer, price, CARD_REQUIRES_AUTHENTICATION)
    payment = PaymentAttempt.objects.get()
    assert payment.status == PaymentStatus.REQUIRES_ACTION
    with clock.frozen(NOW + dt.timedelta(minutes=30)):
        services.payment_action_expire(payment=payment)  # Tollgate stopped waiting
    # ... and yet the processor captured it (its cancellation lost in a race on its side).
    SandboxCharge.objects.filter(reference=payment.gateway_reference).update(
        status=SandboxCharge.Status.SUCCEEDED, decline_code=""
    )

    run = reconcile()

    assert kinds(run) == [("status", "payment")]
    assert run.mismatches[0]["tollgate"]["status"] == "failed"
    assert run.mismatches[0]["gateway"]["status"] == "succeeded"
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED


def test_a_capture_missing_from_the_ledger_is_reported(customer, price):
    subscribe(customer, price)
    payment = PaymentAttempt.objects.get()
    # The books were damaged (PostgreSQL's trigger refuses it otherwise).
    with pgtrigger.ignore("billing.LedgerEntry:ledger_entry_append_only"):
        LedgerEntry.objects.filter(transaction__payment=payment).delete()

    run = reconcile()

    assert kinds(run) == [("ledger", "payment")]
    assert "expected 2900" in run.mismatches[0]["detail"]


class UnreachableGateway(SandboxGateway):
    """A processor whose API is down: the run cannot list its transactions."""

    def transactions_list(
        self, *, since: dt.datetime, until: dt.datetime
    ) -> list[GatewayTransaction]:
        raise GatewayUnavailable("connection refused")


def test_a_run_that_cannot_list_the_gateway_fails_with_the_error_kept(monkeypatch, db):
    use_gateway(monkeypatch, UnreachableGateway)

    run = reconcile()

    assert run.status == ReconciliationRun.Status.FAILED
    assert "connection refused" in run.error
    assert run.finished_at is not None
    assert AuditEvent.objects.filter(action="billing.reconciliation_failed").exists()


def test_the_window_must_be_ordered_and_aware(db):
    with pytest.raises(ValidationFailed):
        reconciliation_run(since=NOW, until=NOW)
    with pytest.raises(ValidationFailed):
        reconciliation_run(since=NOW.replace(tzinfo=None), until=UNTIL)
    assert not ReconciliationRun.objects.exists()


def test_progress_is_reported_up_to_every_item(customer, price):
    subscribe(customer, price, CARD_TIMES_OUT)
    seen = []

    reconcile(on_progress=lambda done, total: seen.append((done, total)))

    assert seen[0] == (0, 1)
    assert seen[-1] == (1, 1)


def test_the_command_prints_a_summary_and_stores_a_run(customer, price, capsys):
    subscribe(customer, price, CARD_TIMES_OUT)

    with clock.frozen(UNTIL):
        call_command("reconcile", "--since", "2025-06-01")

    run = ReconciliationRun.objects.get()
    out = capsys.readouterr().out
    assert f"run={run.public_id} status=completed gateway=sandbox" in out
    assert "window=2025-06-01T00:00:00+00:00..2025-06-02T13:00:00+00:00" in out
    assert "checked=1 healed=1 mismatched=0 unresolved=0" in out
    assert f"healed payment {PaymentAttempt.objects.get().public_id}: unknown -> succeeded" in out


def test_the_command_fails_on_mismatches_and_bad_dates(customer, price, capsys):
    subscribe(customer, price)
    SandboxCharge.objects.update(amount=1)

    with clock.frozen(UNTIL), pytest.raises(CommandError, match="1 mismatches need attention"):
        call_command("reconcile")
    assert "mismatch amount payment" in capsys.readouterr().err
    with pytest.raises(CommandError, match="not a date"):
        call_command("reconcile", "--since", "last week")
    with clock.frozen(NOW), pytest.raises(CommandError, match="in the past"):
        call_command("reconcile", "--since", "2025-07-01")


def test_the_command_reports_a_failed_run(monkeypatch, db):
    use_gateway(monkeypatch, UnreachableGateway)
    with clock.frozen(UNTIL), pytest.raises(CommandError, match="failed: The gateway could not"):
        call_command("reconcile", "--since", "2025-06-01")


@override_settings(BILLING_RECONCILIATION_HOUR=4, BILLING_RECONCILIATION_DAYS=2)
def test_the_daily_run_is_due_once_a_day_and_looks_back_the_configured_days(customer, price):
    assert reconciliation_due(dt.datetime(2025, 6, 3, 4, 0))
    assert not reconciliation_due(dt.datetime(2025, 6, 3, 4, 1))
    assert not reconciliation_due(dt.datetime(2025, 6, 3, 3, 0))
    subscribe(customer, price, CARD_TIMES_OUT)

    with clock.frozen(NOW + dt.timedelta(days=1)):
        reconciliation_daily_task.call_local()
        again = reconciliation_daily()

    first = ReconciliationRun.objects.order_by("started_at", "id").first()
    assert first.window_end - first.window_start == dt.timedelta(days=2)
    assert first.healed_count == 1
    assert again.healed_count == 0
    assert Subscription.objects.get().status == SubscriptionStatus.ACTIVE


def test_a_gateway_status_tollgate_does_not_know_or_another_reference_is_reported(customer, price):
    subscribe(customer, price)
    SandboxCharge.objects.update(status="disputed", reference="sbch_another")

    run = reconcile()

    assert kinds(run) == [("reference", "payment"), ("status", "payment")]
    assert "unknown gateway status 'disputed'" in run.mismatches[1]["detail"]
    assert PaymentAttempt.objects.get().status == PaymentStatus.SUCCEEDED


def test_a_refund_the_gateway_reversed_is_a_status_mismatch(customer, price, staff):
    subscribe(customer, price)
    with clock.frozen(NOW):
        refund = services.refund_issue(
            payment=PaymentAttempt.objects.get(),
            amount=500,
            reason=Refund.Reason.OTHER,
            note="goodwill",
            actor=staff,
            idempotency_key="goodwill",
        )
    SandboxRefund.objects.update(status="failed")

    run = reconcile()

    assert kinds(run) == [("status", "refund")]
    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED


def pending_refund(payment, staff, amount=900):
    """A refund reserved and committed by a worker that died before it reached the gateway."""
    with clock.frozen(NOW), transaction.atomic():
        PaymentAttempt.objects.filter(pk=payment.pk).update(amount_refunded=amount)
        return Refund.objects.create(
            payment=payment,
            amount=amount,
            currency="USD",
            reason=Refund.Reason.REQUESTED_BY_CUSTOMER,
            note="asked by phone",
            idempotency_key=new_key(),
            request_fingerprint="f",
            actor=staff,
        )


def test_a_refund_the_gateway_never_received_is_unresolved_and_listed_by_the_command(
    customer, price, staff, capsys
):
    subscribe(customer, price)
    refund = pending_refund(PaymentAttempt.objects.get(), staff)

    with clock.frozen(UNTIL):
        call_command("reconcile", "--since", "2025-06-01")

    run = ReconciliationRun.objects.get()
    assert (run.unresolved_count, run.mismatched_count) == (1, 0)
    assert f"unresolved refund {refund.public_id}: not received by the gateway" in (
        capsys.readouterr().out
    )
    refund.refresh_from_db()
    assert refund.status == RefundStatus.PENDING
    assert not SandboxRefund.objects.exists()  # reconciliation sends nothing


class UnreachableLookups(SandboxGateway):
    """A processor whose list works but whose lookups by key time out."""

    def charge_lookup(self, *, idempotency_key: str) -> None:
        raise GatewayUnavailable("timeout")

    def refund_lookup(self, *, idempotency_key: str) -> None:
        raise GatewayUnavailable("timeout")


class RefusingLookups(SandboxGateway):
    """A processor that refuses lookups (a restricted key without read access, say)."""

    def charge_lookup(self, *, idempotency_key: str) -> None:
        raise GatewayRequestRefused("permission denied")

    def refund_lookup(self, *, idempotency_key: str) -> None:
        raise GatewayRequestRefused("permission denied")


def use_gateway(monkeypatch, adapter):
    monkeypatch.setitem(registry.ADAPTERS, "sandbox", f"{__name__}.{adapter.__qualname__}")


def test_outcomes_the_gateway_cannot_be_asked_about_are_left_unresolved(
    customer, make_customer, price, staff, monkeypatch
):
    subscribe(customer, price, CARD_TIMES_OUT)
    unknown = PaymentAttempt.objects.get()
    subscribe(make_customer("other@example.org"), price)
    refund = pending_refund(PaymentAttempt.objects.exclude(pk=unknown.pk).get(), staff)
    use_gateway(monkeypatch, UnreachableLookups)

    in_window = reconcile()
    before_window = reconcile(since=NOW + dt.timedelta(minutes=30))

    assert (in_window.healed_count, in_window.mismatched_count) == (0, 0)
    assert {item["id"] for item in in_window.unresolved} == {unknown.public_id, refund.public_id}
    assert "did not settle it" in in_window.unresolved[0]["reason"]
    assert before_window.unresolved_count == 2
    assert "could not be asked" in before_window.unresolved[0]["reason"]
    unknown.refresh_from_db()
    assert unknown.status == PaymentStatus.UNKNOWN


def test_a_heal_the_gateway_refuses_is_reported_and_tried_again_next_run(
    customer, price, staff, monkeypatch
):
    subscribe(customer, price, CARD_TIMES_OUT)
    payment = PaymentAttempt.objects.get()
    use_gateway(monkeypatch, RefusingLookups)

    run = reconcile()

    assert kinds(run) == [("heal_failed", "payment")]
    assert run.mismatches[0]["detail"] == "GatewayRequestRefused"
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.UNKNOWN
    monkeypatch.setitem(registry.ADAPTERS, "sandbox", f"{SandboxGateway.__module__}.SandboxGateway")
    assert reconcile().healed_count == 1


def test_a_refund_heal_the_gateway_refuses_is_reported(customer, price, staff, monkeypatch):
    subscribe(customer, price)
    payment = PaymentAttempt.objects.get()
    refund = pending_refund(payment, staff)
    with clock.frozen(NOW):
        SandboxGateway().refund(
            request=RefundRequest(
                charge_reference=payment.gateway_reference,
                amount=900,
                currency="USD",
                idempotency_key=refund.public_id,
            )
        )
    use_gateway(monkeypatch, RefusingLookups)

    run = reconcile()

    assert kinds(run) == [("heal_failed", "refund")]
    refund.refresh_from_db()
    assert refund.status == RefundStatus.PENDING


def test_a_charge_whose_settlement_differs_from_its_amount_is_a_mismatch_and_nothing_changes(
    customer, price, monkeypatch
):
    import dataclasses

    subscribe(customer, price)
    payment = PaymentAttempt.objects.get()
    listed = SandboxGateway.transactions_list

    def settled_short(self, *, since, until):
        # The processor (outside our control) reports its balance moved 1 less than the charge.
        return [
            dataclasses.replace(item, settled_amount=item.settled_amount - 1)
            if item.settled_amount
            else item
            for item in listed(self, since=since, until=until)
        ]

    monkeypatch.setattr(SandboxGateway, "transactions_list", settled_short)
    run = reconcile()

    assert kinds(run) == [("settlement", "payment")]
    assert run.mismatches[0]["gateway"]["settled_amount"] == payment.amount - 1
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert ledger_check().ok
