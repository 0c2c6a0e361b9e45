"""Outgoing webhooks: events recorded once, signed deliveries to a real local receiver, retries on
the back-off schedule, the endpoint disabled when a delivery exhausts it, secret rotation, resend."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import threading

import pytest
from django.core import mail
from django.db import connection, transaction
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.integrations.conftest import Receiver
from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.billing.models import Customer
from tollgate.core import clock
from tollgate.core.errors import ValidationFailed
from tollgate.core.events import event_publish
from tollgate.integrations import webhook_delivery
from tollgate.integrations.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
)
from tollgate.integrations.webhook_delivery import (
    RETRY_SCHEDULE,
    USER_AGENT,
    webhook_deliveries_send_due,
    webhook_event_record,
)
from tollgate.integrations.webhooks import (
    WebhookEndpointDisabled,
    WebhookEventTypeUnknown,
    WebhookSecretChanged,
    secret_fingerprint,
    webhook_delivery_resend,
    webhook_endpoint_create,
    webhook_endpoint_secret_rotate,
    webhook_endpoint_update,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_targets")]
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def publish(customer: Customer, capture, *, key: str = "k1", extra: dict | None = None) -> None:
    """``customer.updated`` about ``customer``, published in a transaction; delivered after it."""
    with capture(execute=True), transaction.atomic():
        event_publish(
            event_type="customer.updated",
            object_type="customer",
            object_id=customer.public_id,
            key=f"{customer.public_id}:{key}",
            extra=extra,
        )


def endpoint_for(receiver: Receiver, *, path: str = "/hook", types: list[str] | None = None):
    return webhook_endpoint_create(url=receiver.url(path), event_types=types or [], actor=None)


# --- Registering -------------------------------------------------------------------------------------------
def test_an_endpoint_gets_a_standard_webhooks_secret_kept_out_of_the_audit(
    webhook_receiver: Receiver,
) -> None:
    staff = User.objects.create_user(email="ops@example.org", password="x" * 20, is_staff=True)
    endpoint, secret = webhook_endpoint_create(
        url=webhook_receiver.url(),
        event_types=["invoice.paid", "refund.created", "invoice.paid"],
        description=" Fulfilment ",
        actor=staff,
    )
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert endpoint.secret == secret
    assert endpoint.event_types == ["invoice.paid", "refund.created"]
    assert endpoint.description == "Fulfilment"
    audit = AuditEvent.objects.get(action="integrations.webhook_endpoint_created")
    assert audit.actor == staff
    assert secret.removeprefix("whsec_") not in json.dumps(audit.details)


def test_an_unknown_event_type_is_refused_with_the_known_ones_listed(
    webhook_receiver: Receiver,
) -> None:
    with pytest.raises(WebhookEventTypeUnknown, match=r"invoice\.paid"):
        endpoint_for(webhook_receiver, types=["invoice.paied"])
    with pytest.raises(ValidationFailed, match="at most 200"):
        webhook_endpoint_create(
            url=webhook_receiver.url(), event_types=[], description="d" * 201, actor=None
        )


# --- Events and deliveries ----------------------------------------------------------------------------
def test_one_event_to_two_endpoints_carries_one_id_and_each_endpoints_signature(
    webhook_receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    first, first_secret = endpoint_for(webhook_receiver, path="/one")
    second, second_secret = endpoint_for(webhook_receiver, path="/two")
    publish(customer, django_capture_on_commit_callbacks, extra={"reason": "renamed"})
    event = WebhookEvent.objects.get()
    requests = {request.path: request for request in webhook_receiver.requests}
    assert set(requests) == {"/one", "/two"}
    for path, secret in (("/one", first_secret), ("/two", second_secret)):
        request = requests[path]
        document = Webhook(secret).verify(request.body, request.headers)
        assert request.headers["webhook-id"] == event.public_id
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == USER_AGENT
        assert document["type"] == "customer.updated"
        assert document["timestamp"].endswith("Z")
        assert document["data"]["id"] == customer.public_id
        assert document["data"]["object"] == "customer"
        assert document["data"]["reason"] == "renamed"
    with pytest.raises(WebhookVerificationError):
        Webhook(second_secret).verify(requests["/one"].body, requests["/one"].headers)
    for endpoint in (first, second):
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        assert delivery.status == WebhookDelivery.Status.SUCCEEDED
        assert delivery.attempts == 1
        assert delivery.next_attempt_at is None
        attempt = delivery.tries.get()
        assert attempt.succeeded
        assert attempt.status_code == 200
        assert attempt.response_excerpt == '{"received":true}'


def test_recording_an_event_twice_records_it_once(
    webhook_receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    endpoint_for(webhook_receiver)
    payload = {
        "type": "customer.updated",
        "object": "customer",
        "id": customer.public_id,
        "key": "again",
        "extra": {},
    }
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        webhook_event_record(payload)
        webhook_event_record(payload)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        webhook_event_record(payload)
    assert WebhookEvent.objects.count() == 1
    assert WebhookDelivery.objects.count() == 1
    assert len(webhook_receiver.requests) == 1


def test_a_publisher_key_used_again_publishes_nothing_new(
    webhook_receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    endpoint_for(webhook_receiver)
    publish(customer, django_capture_on_commit_callbacks, key="same")
    publish(customer, django_capture_on_commit_callbacks, key="same")
    publish(customer, django_capture_on_commit_callbacks, key="other")
    assert WebhookEvent.objects.count() == 2
    assert len(webhook_receiver.requests) == 2


def test_only_enabled_endpoints_that_want_the_type_get_a_delivery(
    webhook_receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    wanting, _ = endpoint_for(webhook_receiver, path="/wants", types=["customer.updated"])
    endpoint_for(webhook_receiver, path="/other", types=["invoice.paid"])
    disabled, _ = endpoint_for(webhook_receiver, path="/disabled")
    webhook_endpoint_update(endpoint=disabled, enabled=False, actor=None)
    publish(customer, django_capture_on_commit_callbacks)
    assert [request.path for request in webhook_receiver.requests] == ["/wants"]
    assert list(WebhookDelivery.objects.values_list("endpoint", flat=True)) == [wanting.pk]


def test_nothing_is_stored_when_no_endpoint_wants_the_event_or_the_object_is_gone(
    webhook_receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    publish(customer, django_capture_on_commit_callbacks, key="nobody")
    endpoint_for(webhook_receiver)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        event_publish(
            event_type="refund.created", object_type="refund", object_id="ref_gone", key="gone"
        )
    assert not WebhookEvent.objects.exists()
    assert webhook_receiver.requests == []


def test_entitlements_updated_carries_the_customer_and_what_it_is_entitled_to(
    webhook_receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    _, secret = endpoint_for(webhook_receiver)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        event_publish(
            event_type="entitlements.updated",
            object_type="customer",
            object_id=customer.public_id,
            key="none-yet",
        )
    [request] = webhook_receiver.requests
    data = Webhook(secret).verify(request.body, request.headers)["data"]
    assert data["id"] == customer.public_id
    assert data["entitlements"] == {
        "subscription": None,
        "plan": None,
        "status": None,
        "active": False,
    }


# --- Failures and retries ---------------------------------------------------------------------------------
def test_a_failing_receiver_is_retried_on_schedule_then_the_endpoint_is_disabled_and_staff_told(
    webhook_receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    staff = User.objects.create_user(email="ops@example.org", password="x" * 20, is_staff=True)
    User.objects.create_user(
        email="gone@example.org", password="x" * 20, is_staff=True, is_active=False
    )
    webhook_receiver.status = 500
    endpoint, _ = endpoint_for(webhook_receiver)
    mail.outbox.clear()
    with clock.frozen(T0):
        publish(customer, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    at = T0
    for number, wait in enumerate(RETRY_SCHEDULE[1:], start=2):
        delivery.refresh_from_db()
        assert delivery.status == WebhookDelivery.Status.PENDING
        assert delivery.next_attempt_at == at + wait
        with clock.frozen(at + wait - dt.timedelta(seconds=1)):
            assert webhook_deliveries_send_due() == 0  # not due yet
        at += wait
        with django_capture_on_commit_callbacks(execute=True), clock.frozen(at):
            assert webhook_deliveries_send_due() == 1
        assert len(webhook_receiver.requests) == number
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.attempts == len(RETRY_SCHEDULE)
    assert delivery.completed_at == at
    assert at - T0 == dt.timedelta(hours=68, minutes=36)
    assert {request.headers["webhook-id"] for request in webhook_receiver.requests} == {
        delivery.event.public_id
    }
    assert all(attempt.status_code == 500 for attempt in WebhookAttempt.objects.all())
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert delivery.event.public_id in endpoint.disabled_reason
    assert AuditEvent.objects.filter(
        action="integrations.webhook_endpoint_disabled", target_id=endpoint.public_id
    ).exists()
    [notice] = mail.outbox
    assert notice.to == [staff.email]
    assert endpoint.url in notice.subject
    assert f"/staff/webhooks/{endpoint.public_id}/" in notice.body
    assert notice.alternatives  # HTML too
    with clock.frozen(at + dt.timedelta(days=2)):
        assert webhook_deliveries_send_due() == 0


def test_a_disabled_endpoints_deliveries_wait_and_go_when_it_is_enabled_again(
    webhook_receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    webhook_receiver.status = 503
    endpoint, _ = endpoint_for(webhook_receiver)
    with clock.frozen(T0):
        publish(customer, django_capture_on_commit_callbacks)
    webhook_endpoint_update(endpoint=endpoint, enabled=False, actor=None)
    endpoint.refresh_from_db()
    assert endpoint.disabled_reason == "Disabled by staff."
    with clock.frozen(T0 + dt.timedelta(hours=1)):
        assert webhook_deliveries_send_due() == 0
    webhook_receiver.status = 204
    with django_capture_on_commit_callbacks(execute=True), clock.frozen(T0 + dt.timedelta(hours=2)):
        webhook_endpoint_update(endpoint=endpoint, enabled=True, actor=None)
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason) == (True, "")
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert delivery.attempts == 2
    assert len(webhook_receiver.requests) == 2


def test_a_redirect_is_not_followed(
    webhook_receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    webhook_receiver.status = 302
    webhook_receiver.location = webhook_receiver.url("/elsewhere")
    endpoint_for(webhook_receiver)
    publish(customer, django_capture_on_commit_callbacks)
    assert [request.path for request in webhook_receiver.requests] == ["/hook"]
    attempt = WebhookAttempt.objects.get()
    assert (attempt.status_code, attempt.succeeded) == (302, False)
    assert WebhookDelivery.objects.get().status == WebhookDelivery.Status.PENDING


def test_the_answer_is_kept_as_a_short_scrubbed_excerpt(
    webhook_receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    webhook_receiver.status = 400
    webhook_receiver.reply = b"customer jane.doe@example.org is unknown " + b"x" * 10_000
    endpoint_for(webhook_receiver)
    publish(customer, django_capture_on_commit_callbacks)
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code == 400
    assert len(attempt.response_excerpt) == 500
    assert "jane.doe@example.org" not in attempt.response_excerpt
    assert attempt.response_excerpt.startswith("customer ")


def test_a_receiver_that_is_down_is_recorded_with_the_error(
    customer, django_capture_on_commit_callbacks
) -> None:
    webhook_endpoint_create(url=f"http://127.0.0.1:{free_port()}/hook", event_types=[], actor=None)
    publish(customer, django_capture_on_commit_callbacks)
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code is None
    assert attempt.error.startswith("ConnectionRefusedError")
    delivery = WebhookDelivery.objects.get()
    assert delivery.next_attempt_at == attempt.attempted_at + RETRY_SCHEDULE[1]


def test_a_claimed_delivery_is_left_to_its_worker_for_the_lease_only(
    webhook_receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    webhook_receiver.status = 500
    endpoint_for(webhook_receiver)
    with clock.frozen(T0):
        publish(customer, django_capture_on_commit_callbacks)
    due = T0 + RETRY_SCHEDULE[1]
    with clock.frozen(due):
        claimed = webhook_delivery._claim(delivery_id=None)  # a worker that dies after claiming
    assert claimed is not None
    with clock.frozen(due + dt.timedelta(seconds=30)):
        assert webhook_deliveries_send_due() == 0
    with clock.frozen(due + webhook_delivery._lease()):
        assert webhook_deliveries_send_due() == 1
    assert len(webhook_receiver.requests) == 2


def test_an_attempt_finding_its_delivery_settled_meanwhile_leaves_the_outcome_alone(
    webhook_receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    webhook_receiver.status = 500
    endpoint_for(webhook_receiver)
    with clock.frozen(T0):
        publish(customer, django_capture_on_commit_callbacks)
    with clock.frozen(T0 + RETRY_SCHEDULE[1]):
        claimed = webhook_delivery._claim(delivery_id=None)
        assert claimed is not None
        # Another worker, after this one's lease ran out, got it through.
        WebhookDelivery.objects.filter(pk=claimed.pk).update(
            status=WebhookDelivery.Status.SUCCEEDED, next_attempt_at=None
        )
        webhook_delivery._attempt(claimed)
    claimed.refresh_from_db()
    assert (claimed.status, claimed.attempts) == (WebhookDelivery.Status.SUCCEEDED, 1)
    assert claimed.tries.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_delivery_another_worker_holds_is_skipped_not_waited_for(
    webhook_receiver: Receiver, customer
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks under real concurrency need PostgreSQL (SQLite serializes writers)")
    webhook_receiver.status = 500
    endpoint_for(webhook_receiver)
    with clock.frozen(T0), transaction.atomic():
        event_publish(
            event_type="customer.updated",
            object_type="customer",
            object_id=customer.public_id,
            key="held",
        )
    # The huey task ran at commit (immediate mode): one attempt; the retry is due in a minute.
    assert len(webhook_receiver.requests) == 1
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            WebhookDelivery.objects.select_for_update().get()
            held.set()
            release.wait(timeout=30)
        connection.close()

    worker = threading.Thread(target=hold)
    worker.start()
    try:
        assert held.wait(timeout=30)
        with clock.frozen(T0 + RETRY_SCHEDULE[1]):
            assert webhook_deliveries_send_due() == 0
    finally:
        release.set()
        worker.join(timeout=30)
    with clock.frozen(T0 + RETRY_SCHEDULE[1]):
        assert webhook_deliveries_send_due() == 1


# --- Resending ----------------------------------------------------------------------------------------
def test_a_resend_carries_the_same_id_and_restarts_a_failed_delivery(
    webhook_receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    _, secret = endpoint_for(webhook_receiver)
    publish(customer, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.FAILED, next_attempt_at=None
    )
    with django_capture_on_commit_callbacks(execute=True):
        resent = webhook_delivery_resend(delivery=delivery, actor=None)
    assert resent.status == WebhookDelivery.Status.PENDING
    first, second = webhook_receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.event.public_id
    assert first.body == second.body
    Webhook(secret).verify(second.body, second.headers)
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert delivery.tries.count() == 2
    assert AuditEvent.objects.filter(action="integrations.webhook_delivery_resent").exists()


def test_a_resend_to_a_disabled_endpoint_is_refused(
    webhook_receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    endpoint, _ = endpoint_for(webhook_receiver)
    publish(customer, django_capture_on_commit_callbacks)
    webhook_endpoint_update(endpoint=endpoint, enabled=False, actor=None)
    with pytest.raises(WebhookEndpointDisabled):
        webhook_delivery_resend(delivery=WebhookDelivery.objects.get(), actor=None)


# --- Secret rotation --------------------------------------------------------------------------------------
def test_during_the_overlap_both_secrets_verify_and_after_it_only_the_new_one(
    webhook_receiver: Receiver, customer, django_capture_on_commit_callbacks
) -> None:
    endpoint, old = endpoint_for(webhook_receiver)
    new = webhook_endpoint_secret_rotate(
        endpoint=endpoint, overlap=dt.timedelta(hours=1), actor=None
    )
    publish(customer, django_capture_on_commit_callbacks, key="during")
    during = webhook_receiver.requests[-1]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(during.body, during.headers)
    Webhook(new).verify(during.body, during.headers)
    # A rotation whose hour of overlap ended a while ago (the receiver checks timestamps against
    # the real time, so the request is sent now).
    with clock.frozen(clock.now() - dt.timedelta(hours=2)):
        newest = webhook_endpoint_secret_rotate(
            endpoint=endpoint, overlap=dt.timedelta(hours=1), actor=None
        )
    publish(customer, django_capture_on_commit_callbacks, key="after")
    after = webhook_receiver.requests[-1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    Webhook(newest).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(after.body, after.headers)
    audit = AuditEvent.objects.filter(action="integrations.webhook_secret_rotated").first()
    assert audit is not None
    assert audit.details == {"overlap_seconds": 3600}


def test_a_rotation_without_overlap_stops_the_old_secret_at_once() -> None:
    endpoint, old = webhook_endpoint_create(
        url="https://93.184.215.14/hook", event_types=[], actor=None
    )
    new = webhook_endpoint_secret_rotate(endpoint=endpoint, overlap=dt.timedelta(0), actor=None)
    endpoint.refresh_from_db()
    assert (endpoint.secret, endpoint.previous_secret) == (new, "")
    assert endpoint.previous_secret_expires_at is None
    assert old != new


def test_a_rotation_sent_twice_does_not_push_out_the_secret_the_receiver_knows() -> None:
    endpoint, old = webhook_endpoint_create(
        url="https://93.184.215.14/hook", event_types=[], actor=None
    )
    seen = secret_fingerprint(endpoint)
    webhook_endpoint_secret_rotate(
        endpoint=endpoint, overlap=dt.timedelta(hours=1), replacing=seen, actor=None
    )
    with pytest.raises(WebhookSecretChanged):
        webhook_endpoint_secret_rotate(
            endpoint=endpoint, overlap=dt.timedelta(hours=1), replacing=seen, actor=None
        )
    endpoint.refresh_from_db()
    assert endpoint.previous_secret == old
    with pytest.raises(ValidationFailed, match="7 days"):
        webhook_endpoint_secret_rotate(endpoint=endpoint, overlap=dt.timedelta(days=8), actor=None)


def test_an_update_changes_only_what_is_given_and_audits_it(webhook_receiver: Receiver) -> None:
    endpoint, _ = endpoint_for(webhook_receiver, types=["invoice.paid"])
    updated = webhook_endpoint_update(
        endpoint=endpoint, description="Billing sync", event_types=[], actor=None
    )
    assert (updated.description, updated.event_types, updated.url) == (
        "Billing sync",
        [],
        webhook_receiver.url(),
    )
    again = webhook_endpoint_update(endpoint=endpoint, description="Billing sync", actor=None)
    assert again.description == "Billing sync"
    [audit] = AuditEvent.objects.filter(action="integrations.webhook_endpoint_updated")
    assert audit.details["changed"] == ["description", "event_types"]


# --- Helpers ----------------------------------------------------------------------------------------------
def free_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
