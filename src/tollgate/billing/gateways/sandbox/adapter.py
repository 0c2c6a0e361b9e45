"""The sandbox gateway: an offline processor with Stripe's test cards, for development and tests.

It behaves like a real processor, keeps its own records (``sandbox/models.py``) and honours
idempotency keys the way Stripe does: the same key with the same request returns the first result,
the same key with a different request is refused. Test cards (any future expiry, any CVC):

==================== =====================================================================
4242 4242 4242 4242  succeeds (also Mastercard 5555 5555 5555 4444 and Amex 3782 822463 10005)
4000 0000 0000 0002  declined at setup (generic_decline), like Stripe
4000 0000 0000 9995  saves; every charge is declined (insufficient_funds, a soft decline)
4000 0000 0000 0341  saves fine; every later charge is declined (generic_decline)
4000 0025 0000 3155  saves; every charge requires authentication (3-D Secure)
4000 0000 0000 9979  saves; every charge is declined (stolen_card, a hard decline)
4000 0000 0000 0408  sandbox only: the charge succeeds but the response is lost (a timeout)
==================== =====================================================================

Any other number is refused as a live card in test mode. Numbers are never stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils.crypto import salted_hmac

from tollgate.billing.gateways.base import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    DeclineKind,
    EventRejected,
    GatewayEvent,
    GatewayRequestRefused,
    GatewayTransaction,
    GatewayUnavailable,
    RefundOutcome,
    RefundRequest,
    RefundResult,
    SavedCard,
    SetupResult,
    SetupSession,
    SetupStatus,
    TransactionKind,
    decline_kind_for,
)
from tollgate.billing.gateways.sandbox.models import (
    CardBehaviour,
    SandboxCard,
    SandboxCharge,
    SandboxCustomer,
    SandboxRefund,
    SandboxSetupSession,
)
from tollgate.core import clock

TEST_CARDS = {
    "4242424242424242": (CardBehaviour.SUCCEEDS, "visa"),
    "5555555555554444": (CardBehaviour.SUCCEEDS, "mastercard"),
    "378282246310005": (CardBehaviour.SUCCEEDS, "amex"),
    "4000000000000002": (CardBehaviour.DECLINES_GENERIC, "visa"),
    "4000000000009995": (CardBehaviour.DECLINES_INSUFFICIENT_FUNDS, "visa"),
    "4000000000000341": (CardBehaviour.DECLINES_AFTER_ATTACH, "visa"),
    "4000002500003155": (CardBehaviour.REQUIRES_AUTHENTICATION, "visa"),
    "4000000000009979": (CardBehaviour.DECLINES_STOLEN, "visa"),
    "4000000000000408": (CardBehaviour.TIMES_OUT, "visa"),
}
_CHARGE_DECLINES = {
    CardBehaviour.DECLINES_GENERIC: "generic_decline",
    CardBehaviour.DECLINES_INSUFFICIENT_FUNDS: "insufficient_funds",
    CardBehaviour.DECLINES_AFTER_ATTACH: "generic_decline",
    CardBehaviour.DECLINES_STOLEN: "stolen_card",
}
EVENT_TOLERANCE = dt.timedelta(minutes=5)
_SIGNING_SALT = "tollgate.billing.sandbox.events"


def _luhn_valid(number: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _fingerprint(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _site_url(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def _signature(payload: bytes, timestamp: int) -> str:
    message = str(timestamp).encode() + b"." + payload
    return salted_hmac(_SIGNING_SALT, message, algorithm="sha256").hexdigest()


class SandboxGateway:
    """Implements :class:`tollgate.billing.gateways.base.Gateway` offline."""

    name = "sandbox"

    # --- Customers and card setup -----------------------------------------------------------------
    def customer_create(self, *, customer_id: str, email: str) -> str:
        customer, _ = SandboxCustomer.objects.get_or_create(
            customer_id=customer_id, defaults={"email": email}
        )
        return customer.reference

    def setup_start(self, *, customer_reference: str, return_url: str) -> SetupSession:
        session = SandboxSetupSession.objects.create(
            customer_reference=customer_reference, return_url=return_url
        )
        return SetupSession(
            reference=session.reference, url=_site_url(f"/sandbox/setup/{session.reference}/")
        )

    def setup_submit(
        self, *, session_reference: str, number: str, exp_month: int, exp_year: int
    ) -> SetupResult:
        """What the sandbox's hosted card form does with a submitted card (sandbox only)."""
        with transaction.atomic():
            session = (
                SandboxSetupSession.objects.select_for_update()
                .filter(reference=session_reference)
                .first()
            )
            if session is None or session.status == SandboxSetupSession.Status.SUCCEEDED:
                raise GatewayRequestRefused("no open setup session with this reference")
            digits = "".join(char for char in number if char.isdigit())
            failure = self._card_problem(digits, exp_month, exp_year)
            if failure:
                session.status = SandboxSetupSession.Status.FAILED
                session.failure_code = failure
                session.save(update_fields=["status", "failure_code"])
                return SetupResult(status=SetupStatus.FAILED, failure_code=failure)
            behaviour, brand = TEST_CARDS[digits]
            session.card = SandboxCard.objects.create(
                customer_reference=session.customer_reference,
                behaviour=behaviour,
                brand=brand,
                last4=digits[-4:],
                exp_month=exp_month,
                exp_year=exp_year,
            )
            session.status = SandboxSetupSession.Status.SUCCEEDED
            session.failure_code = ""
            session.save(update_fields=["card", "status", "failure_code"])
        return self.setup_result(session_reference=session_reference)

    @staticmethod
    def _card_problem(digits: str, exp_month: int, exp_year: int) -> str:
        if not 13 <= len(digits) <= 19 or not _luhn_valid(digits):
            return "invalid_number"
        today = clock.now()
        if not 1 <= exp_month <= 12 or (exp_year, exp_month) < (today.year, today.month):
            return "expired_card"
        if digits not in TEST_CARDS:
            return "test_mode_live_card"
        if TEST_CARDS[digits][0] == CardBehaviour.DECLINES_GENERIC:
            return "generic_decline"
        return ""

    def setup_result(self, *, session_reference: str) -> SetupResult:
        session = (
            SandboxSetupSession.objects.select_related("card")
            .filter(reference=session_reference)
            .first()
        )
        if session is None:
            return SetupResult(status=SetupStatus.FAILED, failure_code="setup_not_found")
        if session.card is not None:
            card = session.card
            return SetupResult(
                status=SetupStatus.SUCCEEDED,
                customer_reference=session.customer_reference,
                card=SavedCard(
                    token=card.token,
                    brand=card.brand,
                    last4=card.last4,
                    exp_month=card.exp_month,
                    exp_year=card.exp_year,
                ),
            )
        return SetupResult(
            status=SetupStatus(session.status),
            customer_reference=session.customer_reference,
            failure_code=session.failure_code,
        )

    def payment_method_detach(self, *, token: str) -> None:
        SandboxCard.objects.filter(token=token, detached_at__isnull=True).update(
            detached_at=clock.now()
        )

    # --- Charges ------------------------------------------------------------------------------------
    def charge(self, *, request: ChargeRequest) -> ChargeResult:
        if request.amount <= 0:
            raise GatewayRequestRefused("the amount must be positive")
        fingerprint = _fingerprint(
            {
                "customer": request.customer_reference,
                "card": request.payment_method_token,
                "amount": request.amount,
                "currency": request.currency,
                "off_session": request.off_session,
            }
        )
        existing = SandboxCharge.objects.filter(idempotency_key=request.idempotency_key).first()
        if existing is None:
            card = SandboxCard.objects.filter(
                token=request.payment_method_token,
                customer_reference=request.customer_reference,
                detached_at__isnull=True,
            ).first()
            status, code = self._charge_outcome(card)
            try:
                with transaction.atomic():
                    existing = SandboxCharge.objects.create(
                        idempotency_key=request.idempotency_key,
                        request_fingerprint=fingerprint,
                        customer_reference=request.customer_reference,
                        card_token=request.payment_method_token,
                        amount=request.amount,
                        currency=request.currency,
                        off_session=request.off_session,
                        status=status,
                        decline_code=code,
                        needed_action=status == SandboxCharge.Status.REQUIRES_ACTION,
                    )
            except IntegrityError:
                # A concurrent request with the same key won; answer as it was answered.
                existing = SandboxCharge.objects.get(idempotency_key=request.idempotency_key)
            else:
                if card is not None and card.behaviour == CardBehaviour.TIMES_OUT:
                    raise GatewayUnavailable("sandbox: the response to this charge was lost")
        if existing.request_fingerprint != fingerprint:
            raise GatewayRequestRefused(
                "this idempotency key was used for a different charge request"
            )
        return self._charge_result(existing, first=True)

    @staticmethod
    def _charge_outcome(card: SandboxCard | None) -> tuple[str, str]:
        if card is None:
            return SandboxCharge.Status.FAILED, "payment_method_not_found"
        if card.behaviour == CardBehaviour.REQUIRES_AUTHENTICATION:
            return SandboxCharge.Status.REQUIRES_ACTION, ""
        code = _CHARGE_DECLINES.get(CardBehaviour(card.behaviour))
        if code:
            return SandboxCharge.Status.FAILED, code
        return SandboxCharge.Status.SUCCEEDED, ""

    @staticmethod
    def _charge_result(charge: SandboxCharge, *, first: bool) -> ChargeResult:
        # A replay answers with the first result; a lookup with what is true now. They differ only
        # once a charge that required authentication has been authenticated (or not).
        if first and charge.needed_action:
            return _result_for(charge, SandboxCharge.Status.REQUIRES_ACTION)
        return _result_for(charge, SandboxCharge.Status(charge.status))

    def charge_lookup(self, *, idempotency_key: str) -> ChargeResult | None:
        charge = SandboxCharge.objects.filter(idempotency_key=idempotency_key).first()
        if charge is None:
            return None
        return self._charge_result(charge, first=False)

    def action_complete(self, *, charge_reference: str, authenticated: bool) -> tuple[bytes, str]:
        """The customer finished (or abandoned) 3-D Secure on the sandbox's page (sandbox only).

        Returns the signed ``charge.succeeded`` or ``charge.failed`` event the sandbox delivers to
        Tollgate's inbox, as (payload, signature header).
        """
        with transaction.atomic():
            charge = (
                SandboxCharge.objects.select_for_update()
                .filter(reference=charge_reference, status=SandboxCharge.Status.REQUIRES_ACTION)
                .first()
            )
            if charge is None:
                raise GatewayRequestRefused("no charge awaiting authentication with this reference")
            if authenticated:
                charge.status = SandboxCharge.Status.SUCCEEDED
            else:
                charge.status = SandboxCharge.Status.FAILED
                charge.decline_code = "authentication_required"
            charge.save(update_fields=["status", "decline_code"])
        return self.event_build(
            event_type=f"charge.{charge.status}",
            data={
                "reference": charge.reference,
                "idempotency_key": charge.idempotency_key,
                "status": charge.status,
                "decline_code": charge.decline_code,
            },
        )

    # --- Refunds ------------------------------------------------------------------------------------
    def refund(self, *, request: RefundRequest) -> RefundResult:
        if request.amount <= 0:
            raise GatewayRequestRefused("the amount must be positive")
        fingerprint = _fingerprint(
            {
                "charge": request.charge_reference,
                "amount": request.amount,
                "currency": request.currency,
            }
        )
        with transaction.atomic():
            existing = SandboxRefund.objects.filter(idempotency_key=request.idempotency_key).first()
            if existing is None:
                charge = (
                    SandboxCharge.objects.select_for_update()
                    .filter(reference=request.charge_reference)
                    .first()
                )
                existing = self._refund_create(charge, request, fingerprint)
        if existing.request_fingerprint != fingerprint:
            raise GatewayRequestRefused(
                "this idempotency key was used for a different refund request"
            )
        return _refund_result(existing)

    @staticmethod
    def _refund_create(
        charge: SandboxCharge | None, request: RefundRequest, fingerprint: str
    ) -> SandboxRefund:
        if charge is None:
            raise GatewayRequestRefused("no charge with this reference")
        refunded = (
            charge.refunds.filter(status=SandboxRefund.Status.SUCCEEDED).aggregate(
                total=Sum("amount")
            )["total"]
            or 0
        )
        failure = ""
        if charge.status != SandboxCharge.Status.SUCCEEDED:
            failure = "charge_not_captured"
        elif request.currency != charge.currency:
            failure = "currency_mismatch"
        elif refunded + request.amount > charge.amount:
            failure = "amount_too_large"
        try:
            with transaction.atomic():
                return SandboxRefund.objects.create(
                    idempotency_key=request.idempotency_key,
                    request_fingerprint=fingerprint,
                    charge=charge,
                    amount=request.amount,
                    currency=request.currency,
                    status=SandboxRefund.Status.FAILED
                    if failure
                    else SandboxRefund.Status.SUCCEEDED,
                    failure_code=failure,
                )
        except IntegrityError:
            return SandboxRefund.objects.get(idempotency_key=request.idempotency_key)

    def refund_lookup(self, *, idempotency_key: str) -> RefundResult | None:
        refund = SandboxRefund.objects.filter(idempotency_key=idempotency_key).first()
        return None if refund is None else _refund_result(refund)

    # --- Reconciliation -------------------------------------------------------------------------------
    def transactions_list(
        self, *, since: dt.datetime, until: dt.datetime
    ) -> list[GatewayTransaction]:
        charges = [
            GatewayTransaction(
                kind=TransactionKind.CHARGE,
                reference=charge.reference,
                status=charge.status,
                amount=charge.amount,
                currency=charge.currency,
                idempotency_key=charge.idempotency_key,
                created_at=charge.created_at,
            )
            for charge in SandboxCharge.objects.filter(created_at__gte=since, created_at__lt=until)
        ]
        refunds = [
            GatewayTransaction(
                kind=TransactionKind.REFUND,
                reference=refund.reference,
                status=refund.status,
                amount=refund.amount,
                currency=refund.currency,
                idempotency_key=refund.idempotency_key,
                created_at=refund.created_at,
            )
            for refund in SandboxRefund.objects.filter(created_at__gte=since, created_at__lt=until)
        ]
        return sorted(charges + refunds, key=lambda item: (item.created_at, item.reference))

    # --- Events ----------------------------------------------------------------------------------------
    def event_build(self, *, event_type: str, data: dict[str, Any]) -> tuple[bytes, str]:
        """A signed event as the sandbox sends it: (JSON payload, ``t=<unix>,v1=<hex>`` header)."""
        created = int(clock.now().timestamp())
        payload = json.dumps(
            {
                "id": f"sbevt_{secrets.token_hex(12)}",
                "type": event_type,
                "created": created,
                "data": data,
            },
            sort_keys=True,
        ).encode()
        return payload, f"t={created},v1={_signature(payload, created)}"

    def event_parse(self, *, payload: bytes, signature: str) -> GatewayEvent:
        parts = dict(item.split("=", 1) for item in signature.split(",") if item.count("=") == 1)
        timestamp_text, expected = parts.get("t", ""), parts.get("v1", "")
        if not timestamp_text.isdigit() or not expected:
            raise EventRejected("malformed signature header")
        timestamp = int(timestamp_text)
        if not hmac.compare_digest(_signature(payload, timestamp), expected):
            raise EventRejected("signature does not match")
        sent_at = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
        if abs(clock.now() - sent_at) > EVENT_TOLERANCE:
            raise EventRejected("event is too old or from the future")
        try:
            body = json.loads(payload)
            return GatewayEvent(
                id=str(body["id"]),
                type=str(body["type"]),
                created_at=dt.datetime.fromtimestamp(int(body["created"]), tz=dt.UTC),
                data=dict(body["data"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise EventRejected("event body is not a sandbox event") from exc


def _result_for(charge: SandboxCharge, status: str) -> ChargeResult:
    if status == SandboxCharge.Status.SUCCEEDED:
        return ChargeResult(status=ChargeStatus.SUCCEEDED, reference=charge.reference)
    if status == SandboxCharge.Status.REQUIRES_ACTION:
        return ChargeResult(
            status=ChargeStatus.REQUIRES_ACTION,
            reference=charge.reference,
            action_url=_site_url(f"/sandbox/authenticate/{charge.reference}/"),
        )
    kind = (
        DeclineKind.HARD
        if charge.decline_code == "payment_method_not_found"
        else decline_kind_for(charge.decline_code)
    )
    return ChargeResult(
        status=ChargeStatus.FAILED,
        reference=charge.reference,
        decline_code=charge.decline_code,
        decline_kind=kind,
    )


def _refund_result(refund: SandboxRefund) -> RefundResult:
    return RefundResult(
        status=RefundOutcome(refund.status),
        reference=refund.reference,
        failure_code=refund.failure_code,
    )
