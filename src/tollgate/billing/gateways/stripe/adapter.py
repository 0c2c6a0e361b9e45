"""The Stripe gateway: the billing engine's payments through Stripe's API (official ``stripe`` SDK).

- Cards are saved with SetupIntents: Tollgate's card page (``web/stripe_views.setup``) mounts
  Stripe.js Elements, so the number goes from the browser to Stripe only; Tollgate keeps the
  payment method's id, brand, last four digits and expiry.
- Renewals are off-session PaymentIntents created and confirmed in one request under the engine's
  ``<invoice>-attempt-<n>`` key, sent both as Stripe's ``Idempotency-Key`` and in the intent's
  metadata (``conf.KEY_METADATA``), which is how a lost answer is found again. A bank asking for
  authentication (``authentication_required``, or an intent in ``requires_action``) is
  ``requires_action`` with a link to Tollgate's confirmation page (``web/stripe_views.authenticate``).
- A request whose answer cannot be known (connection lost, timeout, Stripe 5xx) raises
  ``GatewayUnavailable``; the engine records ``unknown`` and later asks ``charge_lookup``, which asks
  Stripe and never charges again.
- Refunds are refunds of the payment intent, keyed by Tollgate's refund id.
- Amounts cross the boundary through ``currencies``: Stripe counts some currencies in other
  units than ISO 4217 (ISK in hundredths, MGA in whole units). An amount Stripe cannot take
  exactly (a three-decimal amount not ending in 0) is refused before it is sent, never rounded.

References: a payment's gateway reference is its PaymentIntent id (``pi_...``); a refund's is the
Refund id (``re_...``); a card's token is the PaymentMethod id (``pm_...``). Stripe's objects are
read into the protocol's values in ``objects.py``; the signed links to Tollgate's Stripe pages are
made in ``links.py``.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import stripe
import structlog
from django.db import IntegrityError, transaction

from tollgate.billing.gateways.base import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    EventRejected,
    GatewayError,
    GatewayEvent,
    GatewayRequestRefused,
    GatewayTransaction,
    GatewayUnavailable,
    RefundOutcome,
    RefundRequest,
    RefundResult,
    SetupResult,
    SetupSession,
    SetupStatus,
    decline_kind_for,
)
from tollgate.billing.gateways.signatures import signature_verify
from tollgate.billing.gateways.stripe.conf import KEY_METADATA, stripe_client, stripe_settings
from tollgate.billing.gateways.stripe.currencies import charge_step, stripe_chargeable
from tollgate.billing.gateways.stripe.links import setup_url
from tollgate.billing.gateways.stripe.models import StripeRequest
from tollgate.billing.gateways.stripe.objects import (
    AUTHENTICATION_CODES,
    action_required,
    charge_transaction,
    id_of,
    intent_result,
    key_of,
    moment_of,
    refund_result,
    refund_status,
    refund_transaction,
    saved_card,
    stripe_amount_exact,
    stripe_field,
)
from tollgate.core import clock

log = structlog.get_logger(__name__)

# A lost answer is looked for among the customer's intents created from this long before the
# request was recorded (clocks of Tollgate and Stripe differ a little).
LOOKUP_MARGIN = dt.timedelta(minutes=5)
PAGE_SIZE = 100
# Renewal charges of one billing-clock batch in flight at once (Stripe's rate limits are generous;
# this keeps a batch from flooding them).
CHARGE_CONCURRENCY = 8
CUSTOMER_METADATA = "tollgate_customer"
# Intent states a cancellation can still stop (nothing was captured yet).
_CANCELABLE = frozenset({"requires_action", "requires_payment_method", "requires_confirmation"})


def _timestamp(moment: dt.datetime) -> int:
    return int(moment.timestamp())


@contextmanager
def _calls() -> Iterator[None]:
    """Turns the SDK's exceptions into the Gateway protocol's: an answer that may be lost
    (connection, timeout, Stripe 5xx, rate limit) is ``GatewayUnavailable``; a request Stripe
    refused is ``GatewayRequestRefused``. Card errors are the caller's to read."""
    try:
        yield
    except stripe.CardError:
        raise
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as exc:
        raise GatewayUnavailable(f"stripe: {type(exc).__name__}") from exc
    except stripe.StripeError as exc:
        raise GatewayRequestRefused(
            f"stripe refused the request: {type(exc).__name__} {exc.code or ''}".strip()
        ) from exc


class StripeGateway:
    """Implements :class:`tollgate.billing.gateways.base.Gateway` with Stripe."""

    name = "stripe"

    def __init__(self, client: stripe.StripeClient | None = None) -> None:
        self._client = client

    @property
    def client(self) -> stripe.StripeClient:
        if self._client is None:
            self._client = stripe_client()
        return self._client

    def can_charge_exactly(self, *, amount: int, currency: str) -> bool:
        return stripe_chargeable(amount=amount, currency=currency)

    def charge_step(self, *, currency: str) -> int:
        return charge_step(currency=currency)

    # --- Customers and card setup -----------------------------------------------------------------
    def customer_create(self, *, customer_id: str, email: str) -> str:
        """Stripe's customer for Tollgate's ``customer_id``: an existing one (found by email and
        the id in its metadata: a link lost on the way) or a new one. Deleted customers are not
        listed by Stripe, so a customer deleted there gets a new record."""
        with _calls():
            listed = self.client.v1.customers.list(params={"email": email, "limit": PAGE_SIZE})
            for existing in listed.auto_paging_iter():
                if (
                    stripe_field(stripe_field(existing, "metadata"), CUSTOMER_METADATA)
                    == customer_id
                ):
                    return str(existing.id)
            customer = self.client.v1.customers.create(
                params={"email": email, "metadata": {CUSTOMER_METADATA: customer_id}},
                # Per call (a retry of this request is one customer); not per Tollgate customer,
                # whose Stripe record may be deleted and made again within the key's 24 hours.
                options={"idempotency_key": f"customer-{customer_id}-{secrets.token_hex(8)}"},
            )
        return str(customer.id)

    def setup_start(self, *, customer_reference: str, return_url: str) -> SetupSession:
        with _calls():
            intent = self.client.v1.setup_intents.create(
                params={
                    "customer": customer_reference,
                    "usage": "off_session",
                }
            )
        return SetupSession(
            reference=intent.id, url=setup_url(setup_intent=intent.id, return_url=return_url)
        )

    def setup_intent_get(self, *, reference: str) -> stripe.SetupIntent:
        """The setup intent as Stripe has it now (for the card page: its client secret)."""
        with _calls():
            return self.client.v1.setup_intents.retrieve(reference)

    def setup_result(self, *, session_reference: str) -> SetupResult:
        try:
            with _calls():
                intent = self.client.v1.setup_intents.retrieve(session_reference)
        except GatewayRequestRefused:
            return SetupResult(status=SetupStatus.FAILED, failure_code="setup_not_found")
        customer = id_of(stripe_field(intent, "customer"))
        status = intent.status
        if status == "succeeded" and stripe_field(intent, "payment_method"):
            return self._setup_card(intent, customer)
        if status == "canceled":
            error = stripe_field(intent, "last_setup_error")
            code = (
                stripe_field(error, "decline_code")
                or stripe_field(error, "code")
                or "setup_canceled"
            )
            return SetupResult(
                status=SetupStatus.FAILED, customer_reference=customer, failure_code=str(code)
            )
        return SetupResult(status=SetupStatus.OPEN, customer_reference=customer)

    def _setup_card(self, intent: stripe.SetupIntent, customer: str) -> SetupResult:
        method_id = id_of(stripe_field(intent, "payment_method"))
        with _calls():
            method = self.client.v1.payment_methods.retrieve(method_id)
            owner = id_of(stripe_field(method, "customer"))
            if not owner and customer:
                # Stripe attaches a SetupIntent's card to its customer; if it has not (yet), the
                # card is attached here, once.
                method = self.client.v1.payment_methods.attach(
                    method_id,
                    params={"customer": customer},
                    options={"idempotency_key": f"attach-{method_id}"},
                )
                owner = id_of(stripe_field(method, "customer"))
        if owner != customer:
            return SetupResult(
                status=SetupStatus.FAILED,
                customer_reference=customer,
                failure_code="payment_method_not_attached",
            )
        return SetupResult(
            status=SetupStatus.SUCCEEDED, customer_reference=customer, card=saved_card(method)
        )

    def setup_return_reference(self, *, query: Mapping[str, str]) -> str:
        # Stripe (and Tollgate's card page) append ``setup_intent`` and ``redirect_status``.
        return str(query.get("setup_intent", ""))

    def payment_method_get(self, *, token: str) -> stripe.PaymentMethod:
        with _calls():
            return self.client.v1.payment_methods.retrieve(token)

    def payment_method_detach(self, *, token: str) -> None:
        try:
            with _calls():
                self.client.v1.payment_methods.detach(token)
        except GatewayRequestRefused:
            # Detached already (or never attached): the card cannot be charged either way.
            log.info("stripe.payment_method_already_detached")

    # --- Charges ------------------------------------------------------------------------------------
    def charge(self, *, request: ChargeRequest) -> ChargeResult:
        [answer] = self.charge_many(requests=[request])
        if isinstance(answer, GatewayError):
            raise answer
        return answer

    def charge_many(
        self, *, requests: Sequence[ChargeRequest]
    ) -> list[ChargeResult | GatewayError]:
        """Each request recorded first (here, before any leaves), then sent to Stripe, at most
        ``CHARGE_CONCURRENCY`` at a time from worker threads that only talk HTTP; the intents they
        made are recorded here afterwards."""
        pending: list[tuple[ChargeRequest, StripeRequest | GatewayError]] = []
        for request in requests:
            try:
                if request.amount <= 0:
                    raise GatewayRequestRefused("the amount must be positive")
                stripe_amount_exact(request.amount, request.currency)
                record: StripeRequest | GatewayError = _request_record(
                    key=request.idempotency_key,
                    kind=StripeRequest.Kind.PAYMENT_INTENT,
                    customer_reference=request.customer_reference,
                )
            except GatewayRequestRefused as exc:
                record = exc
            pending.append((request, record))
        if len(pending) <= 1:
            outcomes = [self._charge_send(request, record) for request, record in pending]
        else:
            # Each thread runs in a copy of this context (the request's log context, a test's
            # frozen clock).
            caller = contextvars.copy_context()
            with ThreadPoolExecutor(max_workers=min(CHARGE_CONCURRENCY, len(pending))) as pool:
                outcomes = list(
                    pool.map(lambda item: caller.copy().run(self._charge_send, *item), pending)
                )
        for (_, record), (_, intent_id) in zip(pending, outcomes, strict=True):
            if isinstance(record, StripeRequest) and intent_id:
                _record_object(record, intent_id)
        return [answer for answer, _ in outcomes]

    def _charge_send(
        self, request: ChargeRequest, record: StripeRequest | GatewayError
    ) -> tuple[ChargeResult | GatewayError, str]:
        """One charge at Stripe (no database access: it may run in a worker thread): the outcome
        or the error it met, and the id of the intent it made, if known."""
        if isinstance(record, GatewayError):
            return record, ""
        try:
            if record.object_id:  # answered before: what is true of that intent now
                return intent_result(self._intent_get(record.object_id)), record.object_id
            try:
                with _calls():
                    intent = self.client.v1.payment_intents.create(
                        params={
                            "amount": stripe_amount_exact(request.amount, request.currency),
                            "currency": request.currency.lower(),
                            "customer": request.customer_reference,
                            "payment_method": request.payment_method_token,
                            "confirm": True,
                            "off_session": request.off_session,
                            "metadata": {
                                KEY_METADATA: request.idempotency_key,
                                "description": request.description,
                            },
                        },
                        options={"idempotency_key": request.idempotency_key},
                    )
            except stripe.CardError as exc:
                return self._card_error_result(exc)
            return intent_result(intent), intent.id
        except GatewayError as exc:
            return exc, ""

    def _card_error_result(self, exc: stripe.CardError) -> tuple[ChargeResult, str]:
        error = exc.error
        intent_id = id_of(stripe_field(error, "payment_intent"))
        charge_id = id_of(stripe_field(error, "charge"))
        if not intent_id and charge_id:
            with _calls():
                intent_id = id_of(self.client.v1.charges.retrieve(charge_id).payment_intent)
        code = str(exc.code or stripe_field(error, "code") or "card_declined")
        if code in AUTHENTICATION_CODES and intent_id:
            return action_required(intent_id), intent_id
        decline = str(stripe_field(error, "decline_code") or code)
        result = ChargeResult(
            status=ChargeStatus.FAILED,
            reference=intent_id,
            decline_code=decline,
            decline_kind=decline_kind_for(decline),
        )
        return result, intent_id

    def _intent_get(self, intent_id: str) -> stripe.PaymentIntent:
        with _calls():
            return self.client.v1.payment_intents.retrieve(intent_id)

    def payment_intent_get(self, *, reference: str) -> stripe.PaymentIntent:
        """The payment intent as Stripe has it now (for the confirmation page)."""
        return self._intent_get(reference)

    def charge_lookup(self, *, idempotency_key: str) -> ChargeResult | None:
        intent = self._intent_for_key(idempotency_key)
        return None if intent is None else intent_result(intent)

    def charge_cancel(self, *, idempotency_key: str) -> ChargeResult:
        """Cancel the intent sent with this key while it still awaits the customer, so an old
        confirmation link can no longer approve it; the intent's state afterwards (an outcome it
        reached first stands)."""
        intent = self._intent_for_key(idempotency_key)
        if intent is None:
            raise GatewayRequestRefused("no payment intent was sent with this idempotency key")
        if intent.status in _CANCELABLE:
            try:
                with _calls():
                    intent = self.client.v1.payment_intents.cancel(
                        intent.id, options={"idempotency_key": f"cancel-{idempotency_key}"}
                    )
            except GatewayRequestRefused:
                intent = self._intent_get(intent.id)  # it moved on meanwhile: its state now
        return intent_result(intent)

    def _intent_for_key(self, idempotency_key: str) -> stripe.PaymentIntent | None:
        """The intent created with ``idempotency_key``; None if Stripe never received the request
        (the record is written before the request leaves)."""
        record = StripeRequest.objects.filter(
            idempotency_key=idempotency_key, kind=StripeRequest.Kind.PAYMENT_INTENT
        ).first()
        if record is None:
            return None
        if record.object_id:
            return self._intent_get(record.object_id)
        intent = self._intent_find(record)
        if intent is not None:
            _record_object(record, intent.id)
        return intent

    def _intent_find(self, record: StripeRequest) -> stripe.PaymentIntent | None:
        """The customer's intent carrying ``record``'s key, when the answer to its creation was lost."""
        since = _timestamp(record.created_at - LOOKUP_MARGIN)
        with _calls():
            listed = self.client.v1.payment_intents.list(
                params={
                    "customer": record.customer_reference,
                    "created": {"gte": since},
                    "limit": PAGE_SIZE,
                }
            )
            for intent in listed.auto_paging_iter():
                if key_of(intent) == record.idempotency_key:
                    return intent
        return None

    # --- Refunds ------------------------------------------------------------------------------------
    def refund(self, *, request: RefundRequest) -> RefundResult:
        if request.amount <= 0:
            raise GatewayRequestRefused("the amount must be positive")
        if not stripe_chargeable(amount=request.amount, currency=request.currency):
            # Nothing was sent: the refund fails as one Stripe refused would.
            return RefundResult(status=RefundOutcome.FAILED, failure_code="amount_not_exact")
        record = _request_record(
            key=request.idempotency_key,
            kind=StripeRequest.Kind.REFUND,
            parent_reference=request.charge_reference,
        )
        if record.object_id:
            return self._refund_current(record.object_id)
        try:
            with _calls():
                refund = self.client.v1.refunds.create(
                    params={
                        "payment_intent": request.charge_reference,
                        "amount": stripe_amount_exact(request.amount, request.currency),
                        "metadata": {KEY_METADATA: request.idempotency_key},
                    },
                    options={"idempotency_key": request.idempotency_key},
                )
        except GatewayRequestRefused as exc:
            # Stripe refused this refund (more than is left, a failed payment): nothing moved.
            cause = exc.__cause__
            code = getattr(cause, "code", None) or "refund_refused"
            return RefundResult(status=RefundOutcome.FAILED, failure_code=str(code))
        _record_object(record, refund.id)
        return refund_result(refund)

    def _refund_current(self, refund_id: str) -> RefundResult:
        with _calls():
            return refund_result(self.client.v1.refunds.retrieve(refund_id))

    def refund_lookup(self, *, idempotency_key: str) -> RefundResult | None:
        record = StripeRequest.objects.filter(
            idempotency_key=idempotency_key, kind=StripeRequest.Kind.REFUND
        ).first()
        if record is None:
            return None
        if record.object_id:
            return self._refund_current(record.object_id)
        with _calls():
            listed = self.client.v1.refunds.list(
                params={"payment_intent": record.parent_reference, "limit": PAGE_SIZE}
            )
            for refund in listed.auto_paging_iter():
                if key_of(refund) == idempotency_key:
                    _record_object(record, refund.id)
                    return refund_result(refund)
        return None

    # --- Reconciliation -------------------------------------------------------------------------------
    def transactions_list(
        self, *, since: dt.datetime, until: dt.datetime
    ) -> list[GatewayTransaction]:
        """Stripe's charges and refunds created in ``[since, until)``: a charge is reported under its
        payment intent (Tollgate's reference) and the intent's key; a payment intent retried after
        authentication has several charges, and the one that succeeded speaks for it."""
        charges: dict[str, GatewayTransaction] = {}
        for charge in self._charges(since=since, until=until):
            item = charge_transaction(charge)
            if item is None:
                continue
            known = charges.get(item.idempotency_key)
            if known is None or known.status != ChargeStatus.SUCCEEDED:
                charges[item.idempotency_key] = item
        refunds = [
            refund_transaction(refund)
            for refund in self._refunds(since=since, until=until)
            if refund_status(refund) is not None
        ]
        return sorted(
            [*charges.values(), *refunds], key=lambda item: (item.created_at, item.reference)
        )

    def _charges(self, *, since: dt.datetime, until: dt.datetime) -> Iterator[stripe.Charge]:
        with _calls():
            listed = self.client.v1.charges.list(
                params={
                    # One bound is sent (``gt`` the second before); the end is checked here.
                    "created": {"gt": _timestamp(since) - 1},
                    "limit": PAGE_SIZE,
                    "expand": ["data.payment_intent", "data.balance_transaction"],
                }
            )
            for charge in listed.auto_paging_iter():
                if since <= moment_of(charge.created) < until:
                    yield charge

    def _refunds(self, *, since: dt.datetime, until: dt.datetime) -> Iterator[stripe.Refund]:
        # Stripe lists refunds newest first: the walk stops at the first one older than the window.
        with _calls():
            listed = self.client.v1.refunds.list(
                params={"limit": PAGE_SIZE, "expand": ["data.balance_transaction"]}
            )
            for refund in listed.auto_paging_iter():
                created = moment_of(refund.created)
                if created < since:
                    return
                if created < until:
                    yield refund

    # --- Events ----------------------------------------------------------------------------------------
    def event_parse(self, *, payload: bytes, signature: str) -> GatewayEvent:
        """Verify ``Stripe-Signature`` over the raw body (any ``v1`` under any configured secret,
        five minutes' tolerance, nothing from the future) and parse the event."""
        signature_verify(
            payload=payload,
            header=signature,
            secrets=stripe_settings().webhook_secrets,
            now=clock.now(),
        )
        try:
            body = json.loads(payload)
            event_id, event_type, data = body["id"], body["type"], body["data"]
            created_at = moment_of(int(body["created"]))
        except (ValueError, KeyError, TypeError, OverflowError, OSError) as exc:
            raise EventRejected("event body is not a Stripe event") from exc
        if not (
            isinstance(event_id, str)
            and 0 < len(event_id) <= 255
            and isinstance(event_type, str)
            and 0 < len(event_type) <= 100
            and isinstance(data, dict)
            and isinstance(data.get("object"), dict)
        ):
            raise EventRejected("event body is not a Stripe event")
        return GatewayEvent(id=event_id, type=event_type, created_at=created_at, data=data)


# --- The adapter's own records ---------------------------------------------------------------------------
def _request_record(
    *, key: str, kind: str, customer_reference: str = "", parent_reference: str = ""
) -> StripeRequest:
    """The record of the request sent under ``key``, written before the request leaves."""
    record = StripeRequest(
        idempotency_key=key,
        kind=kind,
        customer_reference=customer_reference,
        parent_reference=parent_reference,
    )
    try:
        with transaction.atomic():
            record.save(force_insert=True)
    except IntegrityError:
        record = StripeRequest.objects.get(idempotency_key=key)
        if record.kind != kind:
            raise GatewayRequestRefused(
                "this idempotency key was used for a different kind of request"
            ) from None
    return record


def _record_object(record: StripeRequest, object_id: str) -> None:
    if record.object_id != object_id:
        StripeRequest.objects.filter(pk=record.pk).update(object_id=object_id)
        record.object_id = object_id
