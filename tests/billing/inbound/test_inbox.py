"""The inbound-event inbox: signatures checked the way Stripe signs, each event stored once and
processed once in the worker, failures kept and retried, and the sandbox's own events through it."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import threading
import time
from collections.abc import Iterator

import pytest
import stripe
from django.db import connection, connections, transaction
from django.test import Client

from tests import concurrency
from tests.billing.conftest import CARD_OK, CARD_REQUIRES_AUTHENTICATION, add_card, new_key
from tests.ops.conftest import CapturedLogs, captured_logs  # noqa: F401  (fixture)
from tollgate.billing import services
from tollgate.billing.gateways.base import EventRejected
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.billing.gateways.sandbox.models import SandboxCharge
from tollgate.billing.gateways.signatures import (
    MAX_HEADER_LENGTH,
    signature_header_build,
    signature_verify,
)
from tollgate.billing.inbound import inbox
from tollgate.billing.models import (
    InboundEvent,
    Invoice,
    LedgerTransaction,
    PaymentAttempt,
    PaymentMethod,
)
from tollgate.billing.states import InvoiceStatus, PaymentStatus, SubscriptionStatus
from tollgate.core import clock
from tollgate.core.models import OutboxMessage

WEBHOOK = "/webhooks/sandbox/"
HEADER = "Sandbox-Signature"
NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


@pytest.fixture
def secret(settings) -> str:
    settings.SANDBOX_WEBHOOK_SECRET = new_secret()
    settings.SANDBOX_WEBHOOK_SECRET_FALLBACKS = []
    return settings.SANDBOX_WEBHOOK_SECRET


def event_body(event_type: str = "invoice.noted", data: dict | None = None, **fields) -> bytes:
    body = {
        "id": fields.get("id", f"sbevt_{secrets.token_hex(8)}"),
        "type": event_type,
        "created": fields.get("created", int(NOW.timestamp())),
        "data": {"note": "hello"} if data is None else data,
    }
    return json.dumps(body).encode()


def stripe_header(payload: bytes, secret: str, timestamp: dt.datetime = NOW) -> str:
    """The header exactly as Stripe's own library builds it for a test event."""
    return stripe.WebhookSignature.generate_signature_header(
        payload.decode(), secret, int(timestamp.timestamp())
    )


def deliver(client: Client, payload: bytes, header: str | None):
    headers = {} if header is None else {HEADER: header}
    return client.post(WEBHOOK, payload, content_type="application/json", headers=headers)


def assert_refused(response) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "webhook_rejected"
    assert error["message"].startswith("The event could not be verified")
    assert error["details"]["reason"]
    assert not InboundEvent.objects.exists()


# --- Signatures -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_valid_event_is_stored_once_and_a_redelivery_changes_nothing(client, secret):
    payload = event_body(id="sbevt_once")
    with clock.frozen(NOW):
        first = deliver(client, payload, stripe_header(payload, secret))
        again = deliver(client, payload, stripe_header(payload, secret))
    assert (first.status_code, first.json()) == (200, {"received": True, "duplicate": False})
    assert (again.status_code, again.json()) == (200, {"received": True, "duplicate": True})
    event = InboundEvent.objects.get()
    assert (event.gateway, event.event_id, event.type, event.payload) == (
        "sandbox",
        "sbevt_once",
        "invoice.noted",
        {"note": "hello"},
    )
    assert (event.occurred_at, event.received_at) == (NOW, NOW)
    assert str(event) == "sandbox sbevt_once invoice.noted"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case",
    [
        "tampered body",
        "stale timestamp",
        "future timestamp",
        "wrong secret",
        "missing header",
        "empty header",
        "no timestamp",
        "two timestamps",
        "text timestamp",
        "no v1 signature",
        "only a v0 signature",
        "not a signature",
        "garbage",
        "too long",
    ],
)
def test_events_that_fail_verification_are_refused_with_400_and_nothing_is_stored(
    client, secret, case
):
    payload = event_body()
    good = stripe_header(payload, secret)
    signature = good.split("v1=")[1]
    headers = {
        "tampered body": good,
        "stale timestamp": stripe_header(payload, secret, NOW - dt.timedelta(seconds=301)),
        "future timestamp": stripe_header(payload, secret, NOW + dt.timedelta(seconds=301)),
        "wrong secret": stripe_header(payload, new_secret()),
        "missing header": None,
        "empty header": "",
        "no timestamp": f"v1={signature}",
        "two timestamps": f"t={int(NOW.timestamp())},{good}",
        "text timestamp": f"t=now,v1={signature}",
        "no v1 signature": f"t={int(NOW.timestamp())}",
        "only a v0 signature": f"t={int(NOW.timestamp())},v0={signature}",
        "not a signature": f"t={int(NOW.timestamp())},v1=not-hex",
        "garbage": "garbage",
        "too long": good + ",v1=" + "0" * MAX_HEADER_LENGTH,
    }
    body = payload.replace(b"hello", b"HELLO") if case == "tampered body" else payload
    with clock.frozen(NOW):
        assert_refused(deliver(client, body, headers[case]))


@pytest.mark.django_db
def test_timestamps_within_the_tolerance_and_a_little_clock_skew_are_accepted(client, secret):
    with clock.frozen(NOW):
        for signed_at in (NOW - dt.timedelta(seconds=299), NOW + dt.timedelta(seconds=30)):
            payload = event_body()
            response = deliver(client, payload, stripe_header(payload, secret, signed_at))
            assert response.status_code == 200
    assert InboundEvent.objects.count() == 2


@pytest.mark.django_db
def test_during_a_rotation_both_the_old_and_the_new_secret_are_accepted(client, settings):
    old, new = new_secret(), new_secret()
    settings.SANDBOX_WEBHOOK_SECRET, settings.SANDBOX_WEBHOOK_SECRET_FALLBACKS = new, [old]
    with clock.frozen(NOW):
        for secret in (old, new):
            payload = event_body()
            assert deliver(client, payload, stripe_header(payload, secret)).status_code == 200
        # Stripe signs with every active secret during a rotation: one v1 each.
        payload = event_body()
        both = signature_header_build(
            payload=payload, secrets=[old, new], timestamp=int(NOW.timestamp())
        )
        assert deliver(client, payload, both).status_code == 200
        assert InboundEvent.objects.count() == 3
        settings.SANDBOX_WEBHOOK_SECRET_FALLBACKS = []  # the rotation is over
        payload = event_body()
        refused = deliver(client, payload, stripe_header(payload, old))
    assert refused.status_code == 400
    assert InboundEvent.objects.count() == 3


@pytest.mark.django_db
def test_a_signed_body_that_is_not_a_sandbox_event_is_refused(client, secret):
    for payload in (
        b"not json",
        json.dumps({"id": "e", "type": "x"}).encode(),
        json.dumps({"id": "", "type": "x", "created": 1, "data": {}}).encode(),
        json.dumps({"id": "e", "type": "x", "created": 10**20, "data": {}}).encode(),
        json.dumps({"id": "e", "type": "x", "created": 1, "data": ["a"]}).encode(),
        json.dumps(["a list"]).encode(),
    ):
        with clock.frozen(NOW):
            response = deliver(client, payload, stripe_header(payload, secret))
        assert response.status_code == 400
        assert response.json()["error"]["details"]["reason"] == "event body is not a sandbox event"
    assert not InboundEvent.objects.exists()


def test_the_sandboxs_headers_pass_stripes_own_verification(settings):
    settings.SANDBOX_WEBHOOK_SECRET = new_secret()
    payload, header = SandboxGateway().event_build(event_type="charge.succeeded", data={"a": 1})
    assert stripe.WebhookSignature.verify_header(
        payload, header, settings.SANDBOX_WEBHOOK_SECRET, tolerance=300
    )


def test_without_a_configured_secret_nothing_is_accepted():
    payload = b"{}"
    header = signature_header_build(payload=payload, secrets=["s"], timestamp=1)
    with pytest.raises(EventRejected, match="no signing secret"):
        signature_verify(payload=payload, header=header, secrets=[""], now=NOW)
    with pytest.raises(ValueError, match="at least one"):
        signature_header_build(payload=payload, secrets=[], timestamp=1)


def test_the_default_secret_is_derived_from_the_secret_key_and_never_empty(settings):
    assert settings.SANDBOX_WEBHOOK_SECRET.startswith("whsec_")
    assert len(settings.SANDBOX_WEBHOOK_SECRET) == len("whsec_") + 64
    assert settings.SECRET_KEY not in settings.SANDBOX_WEBHOOK_SECRET


# --- The endpoint ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_endpoint_takes_only_post_and_only_for_the_configured_gateway(client, secret):
    get = client.get(WEBHOOK)
    assert (get.status_code, get["Allow"], get.json()["error"]["code"]) == (
        405,
        "POST",
        "method_not_allowed",
    )
    for path in ("/webhooks/stripe/", "/webhooks/paypal/"):
        response = client.post(path, b"{}", content_type="application/json")
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
    form = client.post(WEBHOOK, {"a": "b"}, headers={HEADER: "t=1,v1=00"})
    assert form.status_code == 400
    assert form.json()["error"]["details"]["reason"] == "the body must be raw JSON"
    assert not InboundEvent.objects.exists()


# --- Processing ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_unknown_event_type_is_stored_and_acknowledged(
    client, secret, django_capture_on_commit_callbacks
):
    payload = event_body("something.new")
    with clock.frozen(NOW), django_capture_on_commit_callbacks(execute=True):
        assert deliver(client, payload, stripe_header(payload, secret)).status_code == 200
    event = InboundEvent.objects.get()
    assert (event.status, event.attempts, event.processed_at, event.next_attempt_at) == (
        InboundEvent.Status.PROCESSED,
        1,
        NOW,
        None,
    )


@pytest.mark.django_db
def test_the_sweep_processes_an_event_whose_scheduled_task_was_lost(secret):
    payload = event_body("something.new")
    with clock.frozen(NOW):
        # No on-commit callbacks run here: the task that should have processed it never ran.
        inbox.event_receive(
            gateway="sandbox", payload=payload, signature=stripe_header(payload, secret)
        )
        assert inbox.events_sweep() == 0  # it is fresh: left to its task for now
    with clock.frozen(NOW + inbox.SWEEP_AFTER):
        assert inbox.events_sweep() == 1
        assert inbox.events_sweep() == 0
    assert InboundEvent.objects.get().status == InboundEvent.Status.PROCESSED


@pytest.mark.django_db
def test_an_event_held_by_a_worker_that_died_is_processed_once_its_lease_runs_out(secret):
    payload = event_body("something.new")
    with clock.frozen(NOW):
        event = inbox.event_receive(
            gateway="sandbox", payload=payload, signature=stripe_header(payload, secret)
        ).event
        # A worker took the event and died before recording anything.
        assert inbox._claim(event.pk, now=NOW) is not None
    with clock.frozen(NOW + inbox.LEASE - dt.timedelta(seconds=1)):
        assert inbox.event_process(event_id=event.pk) is False
        assert inbox.events_sweep() == 0
    with clock.frozen(NOW + inbox.LEASE):
        assert inbox.events_sweep() == 1
    event.refresh_from_db()
    assert (event.status, event.attempts, event.locked_until) == (
        InboundEvent.Status.PROCESSED,
        2,
        None,
    )
    assert inbox.event_process(event_id=event.pk) is False  # processed: never again


@pytest.mark.django_db
def test_a_handler_failure_keeps_the_error_and_is_retried_until_it_succeeds(
    browser_client, customer, django_capture_on_commit_callbacks
):
    # The gateway has the customer, but Tollgate has not saved the link yet (a crash in between).
    gateway = SandboxGateway()
    reference = gateway.customer_create(customer_id=customer.public_id, email=customer.email)
    session = gateway.setup_start(customer_reference=reference, return_url="https://t.test/")
    with clock.frozen(NOW), django_capture_on_commit_callbacks(execute=True):
        response = browser_client.post(
            f"/sandbox/setup/{session.reference}/",
            {"number": CARD_OK, "expiry": "12/34", "cvc": "123", "name": "Jo"},
        )
    assert response.status_code == 302
    event = InboundEvent.objects.get()
    assert (event.status, event.attempts, event.next_attempt_at) == (
        InboundEvent.Status.FAILED,
        1,
        NOW + dt.timedelta(seconds=30),
    )
    assert (
        event.last_error == f"EventNotReady: no customer is linked to gateway customer {reference}"
    )
    assert not PaymentMethod.objects.exists()

    with clock.frozen(NOW + dt.timedelta(seconds=29)):
        assert inbox.events_sweep() == 0  # not due yet
    with clock.frozen(NOW + dt.timedelta(seconds=30)):
        assert inbox.events_sweep() == 0  # due, and still failing
    event.refresh_from_db()
    assert (event.status, event.attempts) == (InboundEvent.Status.FAILED, 2)
    assert event.next_attempt_at == NOW + dt.timedelta(seconds=90)

    # Tollgate saves the link (the customer's next card setup does it); the retry then succeeds.
    services.payment_method_setup_start(customer=customer, return_url="https://t.test/")
    with clock.frozen(NOW + dt.timedelta(seconds=90)):
        assert inbox.events_sweep() == 1
    event.refresh_from_db()
    assert (event.status, event.attempts, event.last_error, event.next_attempt_at) == (
        InboundEvent.Status.PROCESSED,
        3,
        "",
        None,
    )
    assert PaymentMethod.objects.get(customer=customer).last4 == "4242"


@pytest.mark.django_db
def test_an_event_that_keeps_failing_stops_after_the_last_attempt_with_its_error(secret):
    payload = event_body("charge.succeeded", data={"idempotency_key": "inv_unknown-attempt-1"})
    at = NOW
    with clock.frozen(at):
        event = inbox.event_receive(
            gateway="sandbox", payload=payload, signature=stripe_header(payload, secret)
        ).event
        assert inbox.event_process(event_id=event.pk) is False
    for _ in range(inbox.MAX_ATTEMPTS - 1):
        event.refresh_from_db()
        at = event.next_attempt_at
        with clock.frozen(at):
            inbox.events_sweep()
    event.refresh_from_db()
    assert (event.status, event.attempts, event.next_attempt_at) == (
        InboundEvent.Status.FAILED,
        inbox.MAX_ATTEMPTS,
        None,
    )
    assert "no payment with the charge's idempotency key" in event.last_error
    with clock.frozen(at + dt.timedelta(days=1)):
        assert inbox.events_sweep() == 0


@pytest.fixture
def browser_client() -> Client:
    return Client()


@pytest.fixture
def awaiting_authentication(customer, price):
    add_card(customer, CARD_REQUIRES_AUTHENTICATION)
    services.subscription_start(
        customer=customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    payment = PaymentAttempt.objects.get()
    assert payment.status == PaymentStatus.REQUIRES_ACTION
    return payment


@pytest.mark.django_db
def test_a_late_event_cannot_undo_the_outcome_the_gateway_reports(
    awaiting_authentication, django_capture_on_commit_callbacks
):
    payment = awaiting_authentication
    gateway = SandboxGateway()
    payload, header = gateway.action_complete(
        charge_reference=payment.gateway_reference, authenticated=True
    )
    # An out-of-date "failed" event for the same charge, properly signed, arrives after.
    stale_payload, stale_header = gateway.event_build(
        event_type="charge.failed",
        data={"reference": payment.gateway_reference, "idempotency_key": payment.idempotency_key},
    )
    with django_capture_on_commit_callbacks(execute=True):
        inbox.event_receive(gateway="sandbox", payload=payload, signature=header)
    with django_capture_on_commit_callbacks(execute=True):
        inbox.event_receive(gateway="sandbox", payload=stale_payload, signature=stale_header)
    assert set(InboundEvent.objects.values_list("status", flat=True)) == {"processed"}
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert Invoice.objects.get().status == InvoiceStatus.PAID


@pytest.mark.django_db
def test_a_setup_event_delivered_again_under_a_new_id_attaches_the_card_once(
    customer, secret, django_capture_on_commit_callbacks
):
    session = services.payment_method_setup_start(customer=customer, return_url="https://t.test/")
    gateway = SandboxGateway()
    gateway.setup_submit(
        session_reference=session.reference, number=CARD_OK, exp_month=1, exp_year=2090
    )
    for _ in range(2):
        payload, header = gateway.event_build(
            event_type="setup_session.succeeded", data={"reference": session.reference}
        )
        with django_capture_on_commit_callbacks(execute=True):
            inbox.event_receive(gateway="sandbox", payload=payload, signature=header)
    assert list(InboundEvent.objects.values_list("status", flat=True)) == ["processed"] * 2
    assert PaymentMethod.objects.filter(customer=customer).count() == 1


@pytest.mark.django_db
def test_a_setup_event_for_a_session_that_did_not_succeed_attaches_nothing(
    customer, secret, django_capture_on_commit_callbacks
):
    session = services.payment_method_setup_start(customer=customer, return_url="https://t.test/")
    for data in ({"reference": session.reference}, {"reference": ""}):
        payload, header = SandboxGateway().event_build(
            event_type="setup_session.succeeded", data=data
        )
        with django_capture_on_commit_callbacks(execute=True):
            inbox.event_receive(gateway="sandbox", payload=payload, signature=header)
    assert list(InboundEvent.objects.order_by("pk").values_list("status", flat=True)) == [
        "processed",
        "failed",
    ]
    assert not PaymentMethod.objects.exists()


# --- The same event five times at once (PostgreSQL) ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent deliveries need PostgreSQL (SQLite serializes all writers)",
)
def test_the_same_event_delivered_five_times_at_once_is_stored_and_processed_once(
    awaiting_authentication,
):
    payment = awaiting_authentication
    payload, header = SandboxGateway().action_complete(
        charge_reference=payment.gateway_reference, authenticated=True
    )
    workers = 5
    statuses = concurrency.race(
        lambda index: deliver(Client(), payload, header).status_code, workers, timeout=60
    )

    assert statuses == [200] * workers
    event = InboundEvent.objects.get()
    assert (event.status, event.attempts) == (InboundEvent.Status.PROCESSED, 1)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert (
        LedgerTransaction.objects.filter(
            kind=LedgerTransaction.Kind.PAYMENT_CAPTURED, payment=payment
        ).count()
        == 1
    )
    assert (
        OutboxMessage.objects.filter(dedupe_key=f"billing_receipt:{payment.public_id}").count() == 1
    )
    assert payment.invoice.subscription.status == SubscriptionStatus.ACTIVE
    assert SandboxCharge.objects.get().status == SandboxCharge.Status.SUCCEEDED


@pytest.mark.django_db
def test_a_charge_event_ahead_of_the_gateways_state_is_retried_until_it_converges(
    awaiting_authentication, django_capture_on_commit_callbacks
):
    payment = awaiting_authentication
    gateway = SandboxGateway()
    early_payload, early_header = gateway.event_build(
        event_type="charge.succeeded",
        data={"reference": payment.gateway_reference, "idempotency_key": payment.idempotency_key},
    )
    with django_capture_on_commit_callbacks(execute=True):
        event = inbox.event_receive(
            gateway="sandbox", payload=early_payload, signature=early_header
        ).event
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.FAILED
    assert event.last_error == (
        f"EventNotReady: payment {payment.public_id} is still requires_action"
    )
    # The gateway catches up (its own event for it is lost); the retry then converges.
    gateway.action_complete(charge_reference=payment.gateway_reference, authenticated=True)
    with clock.frozen(event.next_attempt_at):
        assert inbox.events_sweep() == 1
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert Invoice.objects.get().status == InvoiceStatus.PAID


@pytest.mark.django_db
def test_news_of_a_success_after_tollgate_gave_up_is_reported_not_overwritten(
    awaiting_authentication,
    captured_logs: CapturedLogs,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    payment = services.payment_action_expire(payment=awaiting_authentication)
    assert payment.status == PaymentStatus.FAILED
    # A processor that captured the charge after all (its cancellation lost in a race on its
    # side) and says so.
    SandboxCharge.objects.filter(reference=payment.gateway_reference).update(
        status=SandboxCharge.Status.SUCCEEDED, decline_code=""
    )
    payload, header = SandboxGateway().event_build(
        event_type="charge.succeeded",
        data={
            "reference": payment.gateway_reference,
            "idempotency_key": payment.idempotency_key,
            "status": "succeeded",
            "decline_code": "",
        },
    )
    with django_capture_on_commit_callbacks(execute=True):
        inbox.event_receive(gateway="sandbox", payload=payload, signature=header)
    assert InboundEvent.objects.get().status == InboundEvent.Status.PROCESSED
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    [mismatch] = captured_logs.events("inbox.payment_outcome_mismatch")
    assert (mismatch["payment"], mismatch["status"], mismatch["gateway_status"]) == (
        payment.public_id,
        "failed",
        "succeeded",
    )


# --- Deliveries stored together ---------------------------------------------------------------------

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent deliveries need PostgreSQL (SQLite serializes all writers)",
)


def signed_now(payload: bytes, secret: str) -> str:
    return stripe_header(payload, secret, timestamp=dt.datetime.now(dt.UTC))


@contextlib.contextmanager
def a_write_in_progress(secret: str) -> Iterator[bytes]:
    """While inside: a delivery of the yielded event is being written by this process and waits,
    because another transaction has stored the same event id and not committed. On leaving, that
    transaction rolls back and the delivery completes (200, stored)."""
    held = event_body()
    holding, release = threading.Event(), threading.Event()

    def hold_the_row() -> None:
        try:
            with transaction.atomic():
                InboundEvent.objects.create(
                    gateway="sandbox", event_id=json.loads(held)["id"], type="invoice.noted",
                    occurred_at=NOW, received_at=NOW,
                )  # fmt: skip
                holding.set()
                release.wait(10)
                transaction.set_rollback(True)
        finally:
            connections.close_all()

    def deliver_held() -> None:
        try:
            deliver(Client(), held, signed_now(held, secret))
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    assert holding.wait(10)
    writer = threading.Thread(target=deliver_held)
    writer.start()
    try:
        # Until PostgreSQL shows the delivery's INSERT waiting for the other transaction's row.
        deadline = time.monotonic() + 10
        while True:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                )
                if cursor.fetchone()[0]:
                    break
            assert time.monotonic() < deadline, "the delivery never waited for the row"
            time.sleep(0.02)
        yield held
    finally:
        release.set()
        holder.join(10)
        writer.join(10)


@pytest.mark.django_db(transaction=True)
@postgresql_only
def test_many_deliveries_at_once_share_inserts_and_each_event_is_stored_and_processed_once(
    secret,
    captured_logs: CapturedLogs,  # noqa: F811
):
    # Sixteen deliveries arrive while a write is in progress: they queue behind it, whatever the
    # machine's speed, and are then stored together in one batch.
    bodies = [event_body() for _ in range(16)]
    answers: dict[int, object] = {}

    def deliver_one(index: int) -> None:
        try:
            answers[index] = deliver(Client(), bodies[index], signed_now(bodies[index], secret))
        finally:
            connections.close_all()

    senders = [threading.Thread(target=deliver_one, args=(index,)) for index in range(16)]
    with a_write_in_progress(secret) as held:
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 30
        while len(inbox._intake._queue) < 16:
            assert time.monotonic() < deadline, "the deliveries never queued behind the write"
            time.sleep(0.01)
    for sender in senders:
        sender.join(30)

    assert [answers[index].status_code for index in range(16)] == [200] * 16
    assert [answers[index].json() for index in range(16)] == [
        {"received": True, "duplicate": False}
    ] * 16
    stored = InboundEvent.objects.exclude(event_id=json.loads(held)["id"])
    assert sorted(event.event_id for event in stored) == sorted(
        json.loads(body)["id"] for body in bodies
    )
    assert {event.status for event in stored} == {InboundEvent.Status.PROCESSED}
    assert {event.attempts for event in stored} == {1}
    assert sorted(line["stored"] for line in captured_logs.events("inbox.stored")) == [1, 16]


@pytest.mark.django_db(transaction=True)
@postgresql_only
def test_a_delivery_the_database_does_not_take_in_time_gets_503_and_is_taken_when_sent_again(
    secret, monkeypatch
):
    monkeypatch.setattr(inbox._intake, "_timeout", 0.5)
    blocked = event_body()
    with a_write_in_progress(secret) as held:
        refused = deliver(Client(), blocked, signed_now(blocked, secret))  # queued behind it
    again = deliver(Client(), blocked, signed_now(blocked, secret))

    assert refused.status_code == 503
    assert refused["Retry-After"] == "5"
    assert refused.json()["error"]["code"] == "inbox_busy"
    assert (again.status_code, again.json()) == (200, {"received": True, "duplicate": False})
    assert InboundEvent.objects.filter(event_id=json.loads(blocked)["id"]).count() == 1
    assert InboundEvent.objects.filter(event_id=json.loads(held)["id"]).count() == 1


@pytest.mark.django_db(transaction=True)
@postgresql_only
def test_an_event_received_inside_a_callers_transaction_is_stored_there_without_waiting_for_others(
    secret, monkeypatch
):
    # A delivery written in a batch led by a caller inside a transaction would commit, or roll
    # back, with that caller's transaction: such a caller stores its own event alone, at once.
    monkeypatch.setattr(inbox._intake, "_timeout", 0.5)
    own = event_body()
    with a_write_in_progress(secret) as held, transaction.atomic():
        receipt = inbox.event_receive(
            gateway="sandbox", payload=own, signature=signed_now(own, secret)
        )
        transaction.set_rollback(True)

    assert receipt.created
    assert not InboundEvent.objects.filter(event_id=json.loads(own)["id"]).exists()
    assert InboundEvent.objects.filter(event_id=json.loads(held)["id"]).count() == 1
