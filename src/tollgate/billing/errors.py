"""Billing's errors: each a subclass of the core hierarchy with a stable code."""

from __future__ import annotations

from tollgate.core.errors import Conflict, NotFound, ValidationFailed


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
