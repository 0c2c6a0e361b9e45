"""What a reconciliation run finds, as it goes (``reconciliation.py`` does the comparing): each
mismatch with its kind, what Tollgate and the gateway each say, the heals and what stays
unresolved; stored on the run when it ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tollgate.billing.gateways.base import ChargeResult, GatewayTransaction, RefundResult
from tollgate.billing.models import PaymentAttempt, Refund


class MismatchKind(StrEnum):
    AMOUNT = "amount"
    CURRENCY = "currency"
    STATUS = "status"
    REFERENCE = "reference"
    MISSING_LOCALLY = "missing_locally"
    MISSING_AT_GATEWAY = "missing_at_gateway"
    LEDGER = "ledger"
    # What the gateway's balance moved for it differs from its amount or currency.
    SETTLEMENT = "settlement"
    # The gateway has an outcome, but recording it failed (the error is logged); tried again next run.
    HEAL_FAILED = "heal_failed"


@dataclass(frozen=True, slots=True)
class Seen:
    """What the gateway says about one charge or refund. A lookup by key tells no amount."""

    status: str
    reference: str
    amount: int | None = None
    currency: str | None = None
    settled_amount: int | None = None
    settled_currency: str = ""

    @classmethod
    def listed(cls, item: GatewayTransaction) -> Seen:
        return cls(
            status=item.status,
            reference=item.reference,
            amount=item.amount,
            currency=item.currency,
            settled_amount=item.settled_amount,
            settled_currency=item.settled_currency,
        )

    @classmethod
    def looked_up(cls, result: ChargeResult | RefundResult) -> Seen:
        return cls(status=result.status.value, reference=result.reference)

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"status": self.status, "reference": self.reference}
        if self.amount is not None:
            described |= {"amount": self.amount, "currency": self.currency}
        if self.settled_amount is not None:
            described |= {"settled_amount": self.settled_amount, "settled": self.settled_currency}
        return described


def record_describe(record: PaymentAttempt | Refund) -> dict[str, Any]:
    return {
        "status": record.status,
        "amount": record.amount,
        "currency": record.currency,
        "reference": record.gateway_reference,
    }


@dataclass
class Findings:
    """What a run found, as it goes; stored on the run when it ends."""

    checked: int = 0
    heals: list[dict[str, Any]] = field(default_factory=list)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    unresolved: list[dict[str, Any]] = field(default_factory=list)

    def mismatch(
        self,
        kind: MismatchKind,
        *,
        kind_of_record: str,
        key: str,
        record: PaymentAttempt | Refund | None = None,
        seen: Seen | None = None,
        detail: str = "",
    ) -> None:
        self.mismatches.append(
            {
                "kind": kind.value,
                "object": kind_of_record,
                "id": record.public_id if record is not None else "",
                "idempotency_key": key,
                "tollgate": record_describe(record) if record is not None else None,
                "gateway": seen.describe() if seen is not None else None,
                "detail": detail,
            }
        )

    def unresolvable(
        self, *, kind_of_record: str, record: PaymentAttempt | Refund, why: str
    ) -> None:
        self.unresolved.append(
            {
                "object": kind_of_record,
                "id": record.public_id,
                "status": record.status,
                "reason": why,
            }
        )
