"""Dunning: what a failed (or authentication-awaiting) renewal payment does to its subscription and
invoice: past due, the next retry scheduled from the first failure
(``BILLING_DUNNING_RETRY_DAYS``), and at the end canceled or unpaid
(``BILLING_DUNNING_FINAL_STATUS``). Steps, in the caller's transaction on locked rows."""

from __future__ import annotations

from tollgate.audit.services import audit_record
from tollgate.billing.conf import billing_settings
from tollgate.billing.locks import PaymentLocks
from tollgate.billing.models import Invoice, PaymentAttempt
from tollgate.billing.states import PaymentStatus, SubscriptionStatus
from tollgate.billing.steps.invoices import invoice_write_off_locked
from tollgate.billing.steps.subscriptions import subscription_end_locked, subscription_move_locked
from tollgate.core import clock

_DUNNED = frozenset(
    {Invoice.BillingReason.SUBSCRIPTION_CYCLE, Invoice.BillingReason.SUBSCRIPTION_UPDATE}
)


def dunning_advance_locked(locks: PaymentLocks) -> None:
    """A failed renewal payment makes the subscription past due and schedules the next retry,
    counted from the first failure (``BILLING_DUNNING_RETRY_DAYS``); so does a failed payment for a
    mid-period upgrade. When the retries are exhausted, or at once on a hard decline, the subscription becomes canceled (and the invoice is
    written off) or unpaid (and the invoice stays open), as ``BILLING_DUNNING_FINAL_STATUS`` says.
    First invoices (incomplete subscriptions) and one-off invoices are not retried."""
    subscription, invoice = locks.subscription, locks.invoice
    if (
        subscription is None
        or invoice.billing_reason not in _DUNNED
        or subscription.status not in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
    ):
        return
    conf = billing_settings()
    if subscription.status == SubscriptionStatus.ACTIVE:
        subscription_move_locked(subscription=subscription, target=SubscriptionStatus.PAST_DUE)
    failures = invoice.payments.filter(status=PaymentStatus.FAILED).order_by("completed_at", "pk")
    retries_done = failures.count() - 1
    hard = locks.payment.decline_kind == PaymentAttempt.DeclineKind.HARD
    if not hard and retries_done < len(conf.dunning_retries):
        first_failure = failures.values_list("completed_at", flat=True)[0] or clock.now()
        invoice.next_payment_attempt_at = first_failure + conf.dunning_retries[retries_done]
        invoice.save(update_fields=["next_payment_attempt_at"])
        return
    if conf.dunning_final_status == SubscriptionStatus.CANCELED:
        subscription_end_locked(
            subscription=subscription, status=SubscriptionStatus.CANCELED, at=clock.now()
        )
        invoice_write_off_locked(customer=locks.customer, invoice=invoice)
    else:
        subscription_move_locked(subscription=subscription, target=SubscriptionStatus.UNPAID)
    audit_record(
        action="billing.dunning_ended",
        target=subscription,
        details={"invoice": invoice.public_id, "status": subscription.status, "hard_decline": hard},
    )


def dunning_action_required_locked(locks: PaymentLocks) -> None:
    """A renewal the bank wants the customer to authenticate leaves the subscription past due until
    they do (the email carries the link); it is not retried meanwhile."""
    subscription = locks.subscription
    if (
        subscription is not None
        and locks.invoice.billing_reason in _DUNNED
        and subscription.status == SubscriptionStatus.ACTIVE
    ):
        subscription_move_locked(subscription=subscription, target=SubscriptionStatus.PAST_DUE)
