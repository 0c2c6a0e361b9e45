"""Stripe's objects read as the Gateway protocol's values: a card, a charge or refund outcome, a
transaction of the reconciliation window. No SDK type leaves the adapter through these: each
returns a value of ``gateways.base``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import stripe

from tollgate.billing.gateways.base import (
    ChargeResult,
    ChargeStatus,
    GatewayRequestRefused,
    GatewayTransaction,
    GatewayUnavailable,
    RefundOutcome,
    RefundResult,
    SavedCard,
    TransactionKind,
    decline_kind_for,
)
from tollgate.billing.gateways.stripe.conf import KEY_METADATA
from tollgate.billing.gateways.stripe.currencies import (
    InexactAmount,
    stripe_amount,
    tollgate_amount,
)
from tollgate.billing.gateways.stripe.links import action_url

# Stripe's error codes meaning "the customer must authenticate this payment".
AUTHENTICATION_CODES = frozenset({"authentication_required"})
# Intent states without an outcome yet: asked again later (by the engine, a webhook or a run).
_UNSETTLED = frozenset({"processing", "requires_confirmation", "requires_capture"})


def moment_of(timestamp: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(timestamp), tz=dt.UTC)


def stripe_field(obj: Any, name: str) -> Any:
    """A field of a Stripe object or error, None when Stripe left it out."""
    if obj is None:
        return None
    getter = getattr(obj, "get", None)
    return getter(name) if getter is not None else getattr(obj, name, None)


def key_of(obj: Any) -> str:
    """Tollgate's idempotency key in a Stripe object's metadata; "" when it carries none."""
    key = stripe_field(stripe_field(obj, "metadata"), KEY_METADATA)
    return key if isinstance(key, str) else ""


def id_of(value: Any) -> str:
    """The id of a field that is either an id or an expanded object."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(stripe_field(value, "id") or "")


def saved_card(method: stripe.PaymentMethod) -> SavedCard:
    """What Tollgate keeps of a card: its id, brand, last four digits and expiry."""
    card = stripe_field(method, "card")
    return SavedCard(
        token=str(method.id),
        brand=str(stripe_field(card, "brand") or "card"),
        last4=str(stripe_field(card, "last4") or ""),
        exp_month=int(stripe_field(card, "exp_month") or 0),
        exp_year=int(stripe_field(card, "exp_year") or 0),
    )


def action_required(intent_id: str) -> ChargeResult:
    return ChargeResult(
        status=ChargeStatus.REQUIRES_ACTION,
        reference=intent_id,
        action_url=action_url(intent_id),
    )


def intent_result(intent: stripe.PaymentIntent) -> ChargeResult:
    """A payment intent's state as the engine's charge outcome. An intent still without an
    outcome (processing) raises ``GatewayUnavailable``: the engine keeps waiting."""
    status = intent.status
    if status == "succeeded":
        return ChargeResult(status=ChargeStatus.SUCCEEDED, reference=intent.id)
    if status == "requires_action":
        return action_required(intent.id)
    if status in _UNSETTLED:
        raise GatewayUnavailable(f"stripe: the payment is {status}")
    error = stripe_field(intent, "last_payment_error")
    code = str(stripe_field(error, "code") or "")
    if status == "requires_payment_method" and code in AUTHENTICATION_CODES:
        # Declined off-session for want of authentication: the customer can confirm it on-session.
        return action_required(intent.id)
    if status == "canceled":
        decline = "payment_intent_canceled"
    else:
        decline = str(stripe_field(error, "decline_code") or code or "payment_method_required")
    return ChargeResult(
        status=ChargeStatus.FAILED,
        reference=intent.id,
        decline_code=decline,
        decline_kind=decline_kind_for(decline),
    )


def refund_status(refund: stripe.Refund) -> RefundOutcome | None:
    if refund.status == "succeeded":
        return RefundOutcome.SUCCEEDED
    if refund.status in ("failed", "canceled"):
        return RefundOutcome.FAILED
    return None  # pending or requires_action: no outcome yet


def refund_result(refund: stripe.Refund) -> RefundResult:
    status = refund_status(refund)
    if status is None:
        raise GatewayUnavailable(f"stripe: the refund is {refund.status}")
    failure = (
        ""
        if status == RefundOutcome.SUCCEEDED
        else str(stripe_field(refund, "failure_reason") or refund.status)
    )
    return RefundResult(status=status, reference=str(refund.id), failure_code=failure)


def charge_transaction(charge: stripe.Charge) -> GatewayTransaction | None:
    if charge.status not in ("succeeded", "failed"):
        return None  # pending: no outcome yet
    intent = stripe_field(charge, "payment_intent")
    key = (key_of(intent) if not isinstance(intent, str) else "") or str(charge.id)
    return GatewayTransaction(
        kind=TransactionKind.CHARGE,
        reference=id_of(intent) or str(charge.id),
        status=str(charge.status),
        amount=tollgate_amount(amount=int(charge.amount), currency=str(charge.currency)),
        currency=str(charge.currency).upper(),
        idempotency_key=str(key),
        created_at=moment_of(charge.created),
        **_settlement(charge),
    )


def refund_transaction(refund: stripe.Refund) -> GatewayTransaction:
    status = refund_status(refund)
    key = key_of(refund) or str(refund.id)
    return GatewayTransaction(
        kind=TransactionKind.REFUND,
        reference=str(refund.id),
        status=str(status),
        amount=tollgate_amount(amount=int(refund.amount), currency=str(refund.currency)),
        currency=str(refund.currency).upper(),
        idempotency_key=str(key),
        created_at=moment_of(refund.created),
        **_settlement(refund),
    )


def _settlement(item: stripe.Charge | stripe.Refund) -> dict[str, Any]:
    """What Stripe's balance moved for a charge or refund: its balance transaction's amount (as a
    positive number: a refund's is negative) and currency; nothing while it has none."""
    balance = stripe_field(item, "balance_transaction")
    if balance is None or isinstance(balance, str):
        return {}
    currency = str(balance.currency)
    return {
        "settled_amount": tollgate_amount(amount=abs(int(balance.amount)), currency=currency),
        "settled_currency": currency.upper(),
    }


def stripe_amount_exact(amount: int, currency: str) -> int:
    """Tollgate's amount in Stripe's units; refused (nothing is sent) when not exact."""
    try:
        return stripe_amount(amount=amount, currency=currency)
    except InexactAmount as exc:
        raise GatewayRequestRefused(str(exc)) from exc
