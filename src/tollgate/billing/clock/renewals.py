"""Plain renewals after their batch has committed: the charges are sent as one batch
(``Gateway.charge_many``) and their outcomes recorded, the successes of the batch in one
transaction (locks customer -> subscription -> invoice -> payment, each taken with one statement in
primary-key order; the invoices marked paid with the same checks as one by one, in bulk), anything
else (a decline, authentication, an unknown outcome, a row that changed meanwhile) one by one by
``services.payment_outcome_record`` as always. The batch itself is begun by
``steps.renewals.renewals_begin_locked``.

Pending attempts are committed before the gateway is asked, so a crash between the two is
reconciled by idempotency key, and the unique constraints (one invoice per subscription period,
one live attempt per invoice) hold whatever happens.
"""

from __future__ import annotations

from django.db import transaction

from tollgate.audit.models import AuditEvent
from tollgate.audit.services import audit_event_build
from tollgate.billing import ledger, services
from tollgate.billing.gateways.base import ChargeResult, ChargeStatus
from tollgate.billing.locks import PaymentLocks, lock_batch
from tollgate.billing.models import (
    Customer,
    Invoice,
    PaymentAttempt,
    Subscription,
)
from tollgate.billing.services.payments import payment_charge_requests_send
from tollgate.billing.states import PAYMENT, InvoiceStatus, PaymentStatus, SubscriptionStatus
from tollgate.billing.steps.invoices import (
    invoice_frozen,
    invoice_paid_apply,
    invoice_paid_publish,
    invoices_paid_save_locked,
)
from tollgate.billing.steps.payments import (
    PendingCharge,
    payment_notify,
    payment_outcome_audit,
)
from tollgate.core import clock
from tollgate.core.outbox import outbox_batch


def renewal_charges_send(charges: list[PendingCharge]) -> None:
    """Send committed pending charges (outside any transaction) and record their outcomes: the
    successes together, anything else one by one."""
    results = list(zip(charges, payment_charge_requests_send(charges), strict=True))
    recorded = _successes_record(
        [
            (charge, result)
            for charge, result in results
            if result is not None and result.status == ChargeStatus.SUCCEEDED
        ]
    )
    for charge, result in results:
        if charge.payment.pk not in recorded:
            services.payment_outcome_record(payment=charge.payment, result=result, actor=None)


def _successes_record(successes: list[tuple[PendingCharge, ChargeResult]]) -> set[int]:
    """Record captured payments (the renewals' own pending charges) in one transaction; returns
    the pks recorded. A payment that is no longer pending, or whose invoice or subscription is not
    in the state a plain renewal leaves it in, is left for the one-by-one path."""
    if not successes:
        return set()
    results = {charge.payment.pk: result for charge, result in successes}
    # Which rows to lock comes from the renewals' own invoices (an invoice never changes hands);
    # their state is read under the locks.
    known = [charge.payment.invoice for charge, _ in successes]
    invoice_ids = sorted(invoice.pk for invoice in known)
    now = clock.now()
    with transaction.atomic(durable=True):
        rows = lock_batch(
            customers=Customer.objects.filter(pk__in={invoice.customer_id for invoice in known}),
            subscriptions=Subscription.objects.filter(
                pk__in={invoice.subscription_id for invoice in known}
            ),
            invoices=Invoice.objects.filter(pk__in=invoice_ids),
            payments=PaymentAttempt.objects.filter(pk__in=results),
        )
        customers, subscriptions, invoices = rows.customers, rows.subscriptions, rows.invoices
        frozen = {pk: invoice_frozen(invoice) for pk, invoice in invoices.items()}
        recorded: list[PaymentLocks] = []
        for payment in rows.payments.values():
            invoice = invoices[payment.invoice_id]
            subscription = subscriptions.get(invoice.subscription_id or 0)
            if (
                payment.status != PaymentStatus.PENDING
                or invoice.status != InvoiceStatus.OPEN
                or subscription is None
                or subscription.status != SubscriptionStatus.ACTIVE
            ):
                continue
            result = results[payment.pk]
            payment.status = PAYMENT.check(current=payment.status, target=PaymentStatus.SUCCEEDED)
            payment.gateway_reference = result.reference or payment.gateway_reference
            payment.completed_at = now
            invoice_paid_apply(invoice=invoice, now=now)
            recorded.append(
                PaymentLocks(
                    customer=customers[invoice.customer_id],
                    subscription=subscription,
                    invoice=invoice,
                    payment=payment,
                )
            )
        if not recorded:
            return set()
        # Every recorded payment succeeded now and every invoice is paid in full now: one UPDATE
        # each; only the gateway's references differ from row to row.
        PaymentAttempt.objects.filter(pk__in=[locks.payment.pk for locks in recorded]).update(
            status=PaymentStatus.SUCCEEDED, completed_at=now
        )
        PaymentAttempt.objects.bulk_update(
            [locks.payment for locks in recorded], ["gateway_reference"]
        )
        invoices_paid_save_locked(
            invoices=[locks.invoice for locks in recorded], frozen=frozen, at=now
        )
        ledger.ledger_post_many(
            [ledger.payment_captured_posting(locks=locks, at=now) for locks in recorded]
        )
        AuditEvent.objects.bulk_create(
            [
                audit_event_build(**payment_outcome_audit(locks=locks, actor=None))
                for locks in recorded
            ]
        )
        with outbox_batch():
            for locks in recorded:
                invoice_paid_publish(invoice=locks.invoice)
                payment_notify(locks)
    return {locks.payment.pk for locks in recorded}
