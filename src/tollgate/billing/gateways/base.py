"""The Gateway protocol: what Tollgate's billing engine asks of a payment processor.

The engine is the source of truth; a gateway only moves money. Every adapter (the offline sandbox,
Stripe) implements :class:`Gateway` and speaks only in the dataclasses below, so the engine never sees
a processor's own types. Card numbers never pass through the engine: cards are saved on the gateway's
hosted form and known to Tollgate by token, brand, last four digits and expiry.

Errors: a call whose outcome cannot be known (timeout, connection lost after sending) raises
:class:`GatewayUnavailable`; the engine then records the payment as ``unknown`` and later asks
``charge_lookup`` with the same idempotency key. A request the gateway refuses as malformed (an
idempotency key reused for a different request) raises :class:`GatewayRequestRefused`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class GatewayError(Exception):
    """Base of the errors a gateway adapter raises."""


class GatewayUnavailable(GatewayError):
    """The request may or may not have been processed: ask again with the same idempotency key."""


class GatewayRequestRefused(GatewayError):
    """The gateway refused the request itself (for example, a key reused for a different request)."""


class EventRejected(Exception):
    """An inbound event whose signature, age or shape is not acceptable; it must not be processed."""


class ChargeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REQUIRES_ACTION = "requires_action"


class DeclineKind(StrEnum):
    """Hard declines will not succeed on retry (stolen card, closed account); soft ones may."""

    HARD = "hard"
    SOFT = "soft"


# Card-network decline codes (Stripe's vocabulary) that no retry can turn into a success.
HARD_DECLINE_CODES = frozenset(
    {
        "card_not_supported",
        "currency_not_supported",
        "expired_card",
        "fraudulent",
        "incorrect_number",
        "invalid_account",
        "invalid_number",
        "lost_card",
        "merchant_blacklist",
        "pickup_card",
        "restricted_card",
        "revocation_of_all_authorizations",
        "revocation_of_authorization",
        "security_violation",
        "stolen_card",
        "stop_payment_order",
        "transaction_not_allowed",
    }
)


def decline_kind_for(code: str) -> DeclineKind:
    return DeclineKind.HARD if code in HARD_DECLINE_CODES else DeclineKind.SOFT


@dataclass(frozen=True, slots=True)
class SetupSession:
    """A card-setup session on the gateway's hosted form: send the customer to ``url``."""

    reference: str
    url: str


class SetupStatus(StrEnum):
    OPEN = "open"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class SavedCard:
    """A card saved on the gateway, as Tollgate may know it: never the number."""

    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True, slots=True)
class SetupResult:
    status: SetupStatus
    # The gateway customer the session belongs to: a card is attached only to that customer.
    customer_reference: str = ""
    card: SavedCard | None = None
    failure_code: str = ""


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    customer_reference: str
    payment_method_token: str
    amount: int
    currency: str
    idempotency_key: str
    off_session: bool
    description: str = ""


@dataclass(frozen=True, slots=True)
class ChargeResult:
    status: ChargeStatus
    reference: str = ""
    decline_code: str = ""
    decline_kind: DeclineKind | None = None
    # Where the customer completes authentication (3-D Secure) when status is requires_action.
    action_url: str = ""


@dataclass(frozen=True, slots=True)
class RefundRequest:
    charge_reference: str
    amount: int
    currency: str
    idempotency_key: str


class RefundOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RefundResult:
    status: RefundOutcome
    reference: str = ""
    failure_code: str = ""


class TransactionKind(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class GatewayTransaction:
    """One money movement as the gateway records it (for reconciliation)."""

    kind: TransactionKind
    reference: str
    status: str
    amount: int
    currency: str
    idempotency_key: str
    created_at: dt.datetime
    # What the gateway's balance moved for it (Stripe: its balance transaction), as a positive
    # amount in minor units and its currency; None when the gateway does not say (not settled yet).
    settled_amount: int | None = None
    settled_currency: str = ""


@dataclass(frozen=True, slots=True)
class GatewayEvent:
    """An inbound event whose signature was verified. ``id`` is unique per gateway."""

    id: str
    type: str
    created_at: dt.datetime
    data: Mapping[str, Any] = field(default_factory=dict)


class Gateway(Protocol):
    """A payment processor as the billing engine uses it. Every money-moving call is idempotent."""

    name: str

    def can_charge_exactly(self, *, amount: int, currency: str) -> bool:
        """Whether ``amount`` (Tollgate's minor units) of ``currency`` can be charged and refunded
        here without rounding (some gateways count a currency in larger steps)."""
        ...

    def charge_step(self, *, currency: str) -> int:
        """The smallest amount of ``currency`` (Tollgate's minor units) charged exactly here; the
        amounts charged exactly are its multiples. Prorations round to it (``proration.py``)."""
        ...

    def customer_create(self, *, customer_id: str, email: str) -> str:
        """The gateway's customer record for Tollgate's ``customer_id`` (created once): its reference."""
        ...

    def setup_start(self, *, customer_reference: str, return_url: str) -> SetupSession:
        """Open a hosted card-setup session; the customer enters the card there, never on our pages."""
        ...

    def setup_result(self, *, session_reference: str) -> SetupResult:
        """The state of a setup session and, once it succeeded, the saved card."""
        ...

    def setup_return_reference(self, *, query: Mapping[str, str]) -> str:
        """The setup session's reference in the query of the return URL the hosted form sends the
        customer back to (each gateway names that parameter its own way); "" when it is absent."""
        ...

    def payment_method_detach(self, *, token: str) -> None:
        """Forget a saved card; later charges with it fail. Detaching twice is harmless."""
        ...

    def charge(self, *, request: ChargeRequest) -> ChargeResult:
        """Charge a saved card. The same key with the same request returns the first result."""
        ...

    def charge_many(
        self, *, requests: Sequence[ChargeRequest]
    ) -> list[ChargeResult | GatewayError]:
        """``charge`` for each request, as one batch (the billing clock's renewals): in the same
        order, the result or the error that request met. Sent as the gateway allows (the sandbox
        records a batch at once; an HTTP gateway sends a bounded number concurrently)."""
        ...

    def charge_lookup(self, *, idempotency_key: str) -> ChargeResult | None:
        """What happened to the charge sent with this key; None if the gateway never received it."""
        ...

    def charge_cancel(self, *, idempotency_key: str) -> ChargeResult:
        """Cancel the charge sent with this key while it still awaits the customer's authentication,
        so that it can no longer be approved; returns its state afterwards (failed, or the outcome
        it reached first). Refused (:class:`GatewayRequestRefused`) for a key never received."""
        ...

    def refund(self, *, request: RefundRequest) -> RefundResult:
        """Refund part or all of a charge. The same key with the same request returns the first result."""
        ...

    def refund_lookup(self, *, idempotency_key: str) -> RefundResult | None:
        """What happened to the refund sent with this key; None if the gateway never received it."""
        ...

    def transactions_list(
        self, *, since: dt.datetime, until: dt.datetime
    ) -> list[GatewayTransaction]:
        """Charges and refunds created in ``[since, until)``, oldest first."""
        ...

    def event_parse(self, *, payload: bytes, signature: str) -> GatewayEvent:
        """Verify an inbound event's signature and age and parse it; raise EventRejected otherwise."""
        ...
