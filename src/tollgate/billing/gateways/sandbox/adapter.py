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

Its hosted pages (what they do in ``hosted.py``; the pages in ``web/sandbox_views.py``) are the card
form and the 3-D Secure step; what happens there reaches Tollgate as events signed like Stripe's
webhooks (the ``Sandbox-Signature`` header, with the secret from ``TOLLGATE_SANDBOX_WEBHOOK_SECRET``),
through the same inbox (``billing/inbound/inbox.py``) that a real gateway's events take.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables

from tollgate.billing.gateways.base import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    DeclineKind,
    EventRejected,
    GatewayError,
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
from tollgate.billing.gateways.sandbox.conf import SETUP_SESSION_LIFETIME, sandbox_settings
from tollgate.billing.gateways.sandbox.models import (
    CardBehaviour,
    SandboxCard,
    SandboxCharge,
    SandboxCustomer,
    SandboxRefund,
    SandboxSetupSession,
)
from tollgate.billing.gateways.signatures import (
    signature_compute,
    signature_header_build,
    signature_verify,
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
# A charge canceled while it awaited authentication (Stripe: a canceled PaymentIntent).
CHARGE_CANCELED = "canceled"


def luhn_valid(number: str) -> bool:
    """Whether the digits of ``number`` (ASCII digits only) pass the Luhn check of card numbers."""
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _fingerprint(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _settled(status: str, amount: int, currency: str) -> dict[str, Any]:
    """The sandbox's balance moves by exactly what succeeded, in its currency."""
    if status != "succeeded":
        return {}
    return {"settled_amount": amount, "settled_currency": currency}


def _charge_fingerprint(request: ChargeRequest) -> str:
    return _fingerprint(
        {
            "customer": request.customer_reference,
            "card": request.payment_method_token,
            "amount": request.amount,
            "currency": request.currency,
            "off_session": request.off_session,
        }
    )


def _site_url(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def _signature(payload: bytes, timestamp: int) -> str:
    """The ``v1`` signature of ``payload`` under the sandbox's current signing secret."""
    return signature_compute(
        payload=payload, secret=sandbox_settings().webhook_secret, timestamp=timestamp
    )


def setup_session_expired(session: SandboxSetupSession) -> bool:
    """Whether the hosted card-setup link of ``session`` is too old to be used."""
    return clock.now() >= session.created_at + SETUP_SESSION_LIFETIME


class SandboxGateway:
    """Implements :class:`tollgate.billing.gateways.base.Gateway` offline."""

    name = "sandbox"

    def can_charge_exactly(self, *, amount: int, currency: str) -> bool:
        return True  # the sandbox keeps Tollgate's own minor units

    def charge_step(self, *, currency: str) -> int:
        return 1

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

    @method_decorator(sensitive_variables("number", "digits"))
    def setup_submit(
        self, *, session_reference: str, number: str, exp_month: int, exp_year: int
    ) -> SetupResult:
        """What the sandbox's hosted card form does with a submitted card (sandbox only): the
        number is checked and forgotten; only the behaviour, brand, last four digits and expiry
        are kept. An expired or completed session is refused."""
        with transaction.atomic():
            session = (
                SandboxSetupSession.objects.select_for_update()
                .filter(reference=session_reference)
                .first()
            )
            if session is None or session.status == SandboxSetupSession.Status.SUCCEEDED:
                raise GatewayRequestRefused("no open setup session with this reference")
            if setup_session_expired(session):
                raise GatewayRequestRefused("this setup session has expired")
            digits = "".join(char for char in number if "0" <= char <= "9")
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
        if not 13 <= len(digits) <= 19 or not luhn_valid(digits):
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

    def setup_return_reference(self, *, query: Mapping[str, str]) -> str:
        # The hosted form appends ``setup_session`` (see ``hosted.return_url_for``).
        return str(query.get("setup_session", ""))

    def payment_method_detach(self, *, token: str) -> None:
        SandboxCard.objects.filter(token=token, detached_at__isnull=True).update(
            detached_at=clock.now()
        )

    # --- Charges ------------------------------------------------------------------------------------
    def charge(self, *, request: ChargeRequest) -> ChargeResult:
        [answer] = self.charge_many(requests=[request])
        if isinstance(answer, GatewayError):
            raise answer
        return answer

    def charge_many(
        self, *, requests: Sequence[ChargeRequest]
    ) -> list[ChargeResult | GatewayError]:
        # Like a processor, the sandbox answers new keys with one write: the charges are recorded
        # (the unique key refuses a second one) and only replays read the first answers. A batch
        # takes three statements: the cards, the inserts, and the stored rows read back.
        cards = {
            (card.token, card.customer_reference): card
            for card in SandboxCard.objects.filter(
                token__in={request.payment_method_token for request in requests},
                detached_at__isnull=True,
            )
        }
        rows: list[tuple[ChargeRequest, SandboxCard | None, SandboxCharge | None]] = []
        for request in requests:
            if request.amount <= 0:
                rows.append((request, None, None))
                continue
            card = cards.get((request.payment_method_token, request.customer_reference))
            status, code = self._charge_outcome(card)
            charge = SandboxCharge(
                idempotency_key=request.idempotency_key,
                request_fingerprint=_charge_fingerprint(request),
                customer_reference=request.customer_reference,
                card_token=request.payment_method_token,
                amount=request.amount,
                currency=request.currency,
                off_session=request.off_session,
                status=status,
                decline_code=code,
                needed_action=status == SandboxCharge.Status.REQUIRES_ACTION,
            )
            rows.append((request, card, charge))
        new = [charge for _, _, charge in rows if charge is not None]
        # A key seen before is skipped by the database (ON CONFLICT DO NOTHING), never an error.
        SandboxCharge.objects.bulk_create(new, ignore_conflicts=True)
        stored = {
            charge.idempotency_key: charge
            for charge in SandboxCharge.objects.filter(
                idempotency_key__in=[charge.idempotency_key for charge in new]
            )
        }
        return [
            self._charge_answer(request, card, charge, stored) for request, card, charge in rows
        ]

    def _charge_answer(
        self,
        request: ChargeRequest,
        card: SandboxCard | None,
        charge: SandboxCharge | None,
        stored: dict[str, SandboxCharge],
    ) -> ChargeResult | GatewayError:
        if charge is None:
            return GatewayRequestRefused("the amount must be positive")
        existing = stored[request.idempotency_key]
        first = existing.reference == charge.reference  # this request's insert made the row
        if first and card is not None and card.behaviour == CardBehaviour.TIMES_OUT:
            return GatewayUnavailable("sandbox: the response to this charge was lost")
        # Not the first: the key was seen before (a replay, or a concurrent request that won).
        if existing.request_fingerprint != charge.request_fingerprint:
            return GatewayRequestRefused(
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

    def charge_cancel(self, *, idempotency_key: str) -> ChargeResult:
        with transaction.atomic():
            charge = (
                SandboxCharge.objects.select_for_update()
                .filter(idempotency_key=idempotency_key)
                .first()
            )
            if charge is None:
                raise GatewayRequestRefused("no charge with this idempotency key")
            if charge.status == SandboxCharge.Status.REQUIRES_ACTION:
                charge.status = SandboxCharge.Status.FAILED
                charge.decline_code = CHARGE_CANCELED
                charge.save(update_fields=["status", "decline_code"])
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
                **_settled(charge.status, charge.amount, charge.currency),
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
                **_settled(refund.status, refund.amount, refund.currency),
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
        header = signature_header_build(
            payload=payload, secrets=[sandbox_settings().webhook_secret], timestamp=created
        )
        return payload, header

    def event_parse(self, *, payload: bytes, signature: str) -> GatewayEvent:
        """Verify an event as Stripe's libraries verify ``Stripe-Signature`` (any configured secret,
        five minutes' tolerance, nothing from the future) and parse it."""
        signature_verify(
            payload=payload,
            header=signature,
            secrets=sandbox_settings().webhook_secrets,
            now=clock.now(),
        )
        try:
            body = json.loads(payload)
            event_id, event_type, data = body["id"], body["type"], body["data"]
            created_at = dt.datetime.fromtimestamp(int(body["created"]), tz=dt.UTC)
        except (ValueError, KeyError, TypeError, OverflowError, OSError) as exc:
            raise EventRejected("event body is not a sandbox event") from exc
        if not (
            isinstance(event_id, str)
            and 0 < len(event_id) <= 255
            and isinstance(event_type, str)
            and 0 < len(event_type) <= 100
            and isinstance(data, dict)
        ):
            raise EventRejected("event body is not a sandbox event")
        return GatewayEvent(id=event_id, type=event_type, created_at=created_at, data=data)


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
