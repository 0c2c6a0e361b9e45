"""Payment writes: paying an invoice on request, and recording what the gateway says.

Calls to the gateway never happen inside a transaction. A payment is recorded as pending and
committed before the gateway is asked (``steps.payments.payment_begin_locked``), and its outcome is
recorded in a second transaction (``payment_outcome_record``); a crash in between leaves the attempt
pending, and ``payment_reconcile`` asks the gateway what happened to its idempotency key before the
invoice can be charged again. ``payment_send`` and ``payment_charge_requests_send`` are the
gateway half of that, shared with the billing clock.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from django.db import transaction

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing.gateways.base import (
    ChargeResult,
    ChargeStatus,
    DeclineKind,
    GatewayError,
    GatewayRequestRefused,
    GatewayUnavailable,
)
from tollgate.billing.gateways.registry import gateway_get
from tollgate.billing.locks import lock_invoice, lock_payment
from tollgate.billing.models import Invoice, PaymentAttempt
from tollgate.billing.states import PAYMENT, InvoiceStatus, PaymentStatus
from tollgate.billing.steps.dunning import dunning_action_required_locked
from tollgate.billing.steps.payments import (
    ACTION_EXPIRED,
    PendingCharge,
    charge_request_for,
    payment_begin_locked,
    payment_captured_locked,
    payment_failed_locked,
    payment_notify,
    payment_outcome_audit,
)
from tollgate.core import clock
from tollgate.core.idempotency import IdempotencyClaim, PublicIdResult, idempotent

log = structlog.get_logger(__name__)


_PAYMENT_RESULT = PublicIdResult(PaymentAttempt)


def invoice_pay(
    *, invoice: Invoice, off_session: bool, actor: User | None = None, idempotency_key: str
) -> PaymentAttempt:
    """Charge an open invoice to the customer's default card now, on request (a customer paying
    after a decline, or paying an invoice that was written off: it is then paid after all).

    Done once per ``idempotency_key`` of the customer: the same request again returns the first
    attempt (as it is now), a different request with the key is refused (422), a duplicate while
    the first is running gets a conflict (409). See ``invoice_charge`` for the charge itself.
    """
    return idempotent(
        scope=invoice.customer.public_id,
        key=idempotency_key,
        operation="invoice_pay",
        parameters={"invoice": invoice.public_id, "off_session": off_session},
        result=_PAYMENT_RESULT,
        work=lambda claim: invoice_charge(
            invoice=invoice, off_session=off_session, actor=actor, claim=claim
        ),
    )


def invoice_charge(
    *,
    invoice: Invoice,
    off_session: bool,
    actor: User | None,
    claim: IdempotencyClaim | None = None,
) -> PaymentAttempt:
    """Charge a payable invoice to the customer's default card, at most once (a step of the keyed
    services, and of attaching a new card, which pays what is open).

    First the attempt is recorded as pending and committed, with the gateway idempotency key
    ``<invoice>-attempt-<n>`` (and, for a keyed request, as the request's checkpoint); no second
    attempt can start while one is live (pending, requires action, unknown or succeeded: a partial
    unique index guards it). Then the gateway is asked, outside any transaction: a timeout leaves
    the outcome ``unknown``. Then the outcome is recorded: a success pays the invoice, posts the
    capture to the ledger, reactivates the subscription and emails a receipt; a decline moves the
    dunning schedule on and tells the customer what happens next; a request for authentication
    emails the customer the link.
    """
    gateway = gateway_get()
    with transaction.atomic(durable=True):
        charge = payment_begin_locked(
            locks=lock_invoice(invoice),
            gateway_name=gateway.name,
            off_session=off_session,
            actor=actor,
        )
        if claim is not None:
            claim.checkpoint(_PAYMENT_RESULT.dump(charge.payment))
    return payment_send(charge=charge, actor=actor)


def payment_send(*, charge: PendingCharge, actor: User | None) -> PaymentAttempt:
    """Send a committed pending charge to its gateway (outside any transaction) and record the
    outcome; a timeout or lost connection records ``unknown``."""
    result = payment_charge_request_send(charge)
    return payment_outcome_record(payment=charge.payment, result=result, actor=actor)


def payment_charge_request_send(charge: PendingCharge) -> ChargeResult | None:
    """Send a committed pending charge to its gateway (outside any transaction); None when the
    outcome cannot be known (timeout, lost connection). Records nothing."""
    gateway = gateway_get(charge.payment.gateway)
    try:
        return gateway.charge(request=charge.request)
    except (GatewayUnavailable, GatewayRequestRefused) as error:
        return _charge_error_outcome(charge, error)


def payment_charge_requests_send(charges: Sequence[PendingCharge]) -> list[ChargeResult | None]:
    """``payment_charge_request_send`` for a batch of charges on the configured gateway, sent as
    one batch (``Gateway.charge_many``); results in the same order."""
    if not charges:
        return []
    gateway = gateway_get()
    if any(charge.payment.gateway != gateway.name for charge in charges):
        return [payment_charge_request_send(charge) for charge in charges]
    answers = gateway.charge_many(requests=[charge.request for charge in charges])
    return [
        answer if isinstance(answer, ChargeResult) else _charge_error_outcome(charge, answer)
        for charge, answer in zip(charges, answers, strict=True)
    ]


def _charge_error_outcome(charge: PendingCharge, error: GatewayError) -> ChargeResult | None:
    """What a charge that met ``error`` comes to: unknown (None) when the gateway may or may not
    have processed it; failed when it refused the request."""
    if not isinstance(error, GatewayRequestRefused):
        log.warning("billing.payment_outcome_unknown", payment=charge.payment.public_id)
        return None
    # Not processed, and the same request would be refused again: the attempt fails (soft) and
    # dunning retries with a new attempt and key. A refusal is a fault to look into.
    log.error(
        "billing.payment_refused_by_gateway",
        payment=charge.payment.public_id,
        reason=str(error),
    )
    return ChargeResult(
        status=ChargeStatus.FAILED,
        decline_code=GATEWAY_REFUSED,
        decline_kind=DeclineKind.SOFT,
    )


GATEWAY_REFUSED = "gateway_refused"


def payment_reconcile(*, payment: PaymentAttempt, actor: User | None = None) -> PaymentAttempt:
    """Ask the gateway what happened to a payment that is pending, unknown or awaiting
    authentication, by its idempotency key, and record the answer.

    When the gateway never received the request (the worker died before it left, or it was lost on
    the way), the same request is sent now under the same key. A gateway processes a key at most
    once, so this cannot charge twice, even if the first request is still on its way.
    """
    if payment.status not in (
        PaymentStatus.PENDING,
        PaymentStatus.UNKNOWN,
        PaymentStatus.REQUIRES_ACTION,
    ):
        return payment
    gateway = gateway_get(payment.gateway)
    try:
        result = gateway.charge_lookup(idempotency_key=payment.idempotency_key)
    except GatewayUnavailable:
        return payment
    if result is not None:
        return payment_outcome_record(payment=payment, result=result, actor=actor)
    invoice = Invoice.objects.select_related("customer").get(pk=payment.invoice_id)
    method = payment.payment_method
    if method is None:  # an attempt made without a card failed at once; it is never pending
        return payment
    request = charge_request_for(payment=payment, invoice=invoice, method=method)
    return payment_send(charge=PendingCharge(payment=payment, request=request), actor=actor)


def payment_action_expire(*, payment: PaymentAttempt, actor: User | None = None) -> PaymentAttempt:
    """Close an attempt that has waited too long for the customer to authenticate it (3-D Secure;
    ``BILLING_PAYMENT_ACTION_EXPIRY_HOURS``, for the billing clock to apply).

    The charge is first canceled at the gateway, by the attempt's idempotency key, so that an old
    authentication link can no longer approve it; the gateway answers with the charge's state, and
    an outcome it reached first (the customer authenticated at the last moment) is recorded as it
    is. Otherwise the attempt fails with ``authentication_expired``, a soft decline, and dunning
    goes on as after any decline: a renewal is retried on schedule, a first invoice is left to
    expire with its subscription. The customer is told, like after any failed payment. When the
    gateway cannot be reached nothing changes (the next run tries again).
    """
    if payment.status != PaymentStatus.REQUIRES_ACTION:
        return payment
    try:
        known: ChargeResult | None = gateway_get(payment.gateway).charge_cancel(
            idempotency_key=payment.idempotency_key
        )
    except GatewayUnavailable:
        return payment
    except GatewayRequestRefused:
        known = None  # the gateway has no such charge: nothing can approve it
    if known is not None and known.status == ChargeStatus.SUCCEEDED:
        return payment_outcome_record(payment=payment, result=known, actor=actor)
    expired = ChargeResult(
        status=ChargeStatus.FAILED,
        reference=payment.gateway_reference,
        decline_code=ACTION_EXPIRED,
        decline_kind=DeclineKind.SOFT,
    )
    return payment_outcome_record(
        payment=payment, result=expired, actor=actor, only_from=PaymentStatus.REQUIRES_ACTION
    )


_PAYMENT_SETTLED = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.FAILED})


def payment_outcome_record(
    *,
    payment: PaymentAttempt,
    result: ChargeResult | None,
    actor: User | None,
    only_from: PaymentStatus | None = None,
) -> PaymentAttempt:
    """Record a gateway outcome (None: unknown). With ``only_from``, only if the payment is still in
    that status under its lock (a decision of ours that news from the gateway may have overtaken)."""
    target = PaymentStatus.UNKNOWN if result is None else PaymentStatus(result.status.value)
    with transaction.atomic(durable=True):
        locks = lock_payment(payment)
        current = locks.payment
        if (
            current.status == target
            or (current.status in _PAYMENT_SETTLED and target not in _PAYMENT_SETTLED)
            or (only_from is not None and current.status != only_from)
        ):
            # Already known, or news of an earlier stage arriving after the final outcome.
            return current
        current.status = PAYMENT.check(current=current.status, target=target)
        # Paying an invoice written off earlier (not one that this outcome is about to write off).
        written_off = locks.invoice.status == InvoiceStatus.UNCOLLECTIBLE
        if result is not None:
            current.gateway_reference = result.reference or current.gateway_reference
            current.decline_code = result.decline_code
            current.decline_kind = result.decline_kind.value if result.decline_kind else ""
            current.action_url = result.action_url
        if target in _PAYMENT_SETTLED:
            current.completed_at = clock.now()
        current.save()
        if target == PaymentStatus.SUCCEEDED:
            payment_captured_locked(locks)
        elif target == PaymentStatus.FAILED:
            payment_failed_locked(locks)
        elif target == PaymentStatus.REQUIRES_ACTION:
            dunning_action_required_locked(locks)
        audit_record(**payment_outcome_audit(locks=locks, actor=actor))
        payment_notify(locks, written_off=written_off)
    return current
