"""Every error billing raises, in one place: the house errors (each a subclass of the core
hierarchy with a stable code and HTTP status) and ``EventNotReady``, the inbox's signal to try an
event again later. The gateways' own errors (``GatewayError`` and its kind) belong to the
``Gateway`` protocol in ``gateways/base.py``."""

from __future__ import annotations

from tollgate.core.errors import (
    BadRequest,
    Conflict,
    NotFound,
    ServiceUnavailable,
    TollgateError,
    ValidationFailed,
)


class TransitionRefused(Conflict):
    code = "transition_refused"
    default_message = "That change is not possible in the current state; reload and try again."


class InvoiceImmutable(Conflict):
    code = "invoice_immutable"
    default_message = "A finalized invoice cannot be changed; void it and issue a new one."


class LedgerImmutable(Conflict):
    code = "ledger_immutable"
    default_message = "Ledger records are never changed or removed; post a reversing transaction."


class InvoiceTotalsMismatch(Conflict):
    code = "invoice_totals_mismatch"
    default_message = "The invoice total does not equal the sum of its lines."


class NoFreeSeat(Conflict):
    code = "no_free_seat"
    default_message = (
        "Every seat of your organisation's plan is taken: add a seat to the subscription first."
    )


class SeatsBelowMembers(Conflict):
    code = "seats_below_members"
    default_message = (
        "A plan priced per seat needs a seat for every member: remove members first, or keep "
        "more seats."
    )


class SubscriptionExists(Conflict):
    code = "subscription_exists"
    default_message = "This customer already has a subscription; change or cancel it instead."


class InvoiceNotPayable(Conflict):
    code = "invoice_not_payable"
    default_message = "This invoice is not open for payment."


class PaymentInProgress(Conflict):
    code = "payment_in_progress"
    default_message = (
        "A payment for this invoice is already in progress or its outcome is being checked; "
        "wait for it to finish."
    )


class PaymentNotCaptured(Conflict):
    code = "payment_not_captured"
    default_message = "Only a payment that succeeded can be refunded."


class RefundExceedsCaptured(Conflict):
    code = "refund_exceeds_captured"
    default_message = (
        "The refund would exceed what remains of the payment; refund a smaller amount."
    )


class PaymentMethodRequired(ValidationFailed):
    code = "payment_method_required"
    default_message = "Add a card before starting a paid subscription."


class PaymentMethodNotFound(NotFound):
    code = "payment_method_not_found"
    default_message = "The card setup was not found or did not complete; add the card again."


class LedgerUnbalanced(Conflict):
    code = "ledger_unbalanced"
    default_message = "The ledger entries do not balance; nothing was recorded."


class PromotionCodeRefused(ValidationFailed):
    """A promotion code that cannot be used here; ``details["reason"]`` says why (``unknown``,
    ``expired``, ``exhausted``, ``not_applicable``, ``first_time_only``)."""

    code = "promotion_code_refused"
    default_message = "That code isn't valid; check it and try again."


# --- Inbound events -----------------------------------------------------------------------------------
class EventNotReady(Exception):
    """The event names something Tollgate does not know (yet): process it again later."""


class WebhookRejected(BadRequest):
    code = "webhook_rejected"
    default_message = (
        "The event could not be verified and was not stored: check the signing secret and send "
        "the raw request body unchanged."
    )


class IntakeBusy(ServiceUnavailable):
    code = "inbox_busy"
    default_message = (
        "The event could not be stored in time and was not acknowledged: send it again."
    )


class MethodNotAllowed(TollgateError):
    code = "method_not_allowed"
    status = 405
    default_message = "Send events with POST."


# --- The sandbox's hosted pages ---------------------------------------------------------------------
class LinkUnavailable(TollgateError):
    """A hosted-page link that cannot be used: unknown, already used or expired."""

    code = "sandbox_link_unavailable"

    def __init__(self, *, title: str, message: str, status: int) -> None:
        super().__init__(message)
        self.title = title
        self.status = status
