"""Bounce and complaint reports from the provider mark an address undeliverable; suppressible email
(billing, dunning, welcome) then skips it, account email (confirmation, password reset) does not, and
confirming the address or staff clear it again.

Reports arrive through anymail's real Postmark tracking webhook, over HTTP, with its basic auth;
the payloads follow Postmark's documented webhook format."""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid

import pytest
from anymail.signals import AnymailTrackingEvent
from django.core import mail
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from prometheus_client import REGISTRY

from tests import concurrency
from tests.billing.conftest import CARD_DECLINES_AFTER_ATTACH, CARD_OK, add_card, new_key
from tests.conftest import STRONG_PASSWORD, last_mail_to, links_in
from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.models import PaymentAttempt
from tollgate.core import clock
from tollgate.core.models import OutboxMessage
from tollgate.notifications.bounces import suppression_reason
from tollgate.notifications.models import SuppressedAddress
from tollgate.notifications.selectors import address_is_suppressed
from tollgate.notifications.services import (
    address_suppress,
    email_enqueue,
    email_send_template,
)

pytestmark = pytest.mark.django_db

SECRET = "postmark:Zq3kT9vB1mN6xR2pL8wY4cH7"
TRACKING = "/webhooks/email/postmark/tracking/"
DEAD = "Gone.Away@Example.org"
START = dt.datetime(2025, 1, 10, 9, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": [SECRET]}


def basic_auth(secret: str = SECRET) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


def bounce(email: str = DEAD, *, bounce_type: str = "HardBounce", event_id: int = 4323372036):
    return {
        "RecordType": "Bounce",
        "ID": event_id,
        "Type": bounce_type,
        "TypeCode": 1 if bounce_type == "HardBounce" else 4096,
        "Name": "Hard bounce" if bounce_type == "HardBounce" else "Soft bounce",
        "Tag": "billing",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {},
        "ServerID": 23,
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message (unknown user).",
        "Details": f"smtp;550 5.1.1 <{email}>: Recipient address rejected",
        "Email": email,
        "From": "no-reply@acme.test",
        "BouncedAt": "2026-12-05T16:33:54.9070259Z",
        "DumpAvailable": False,
        "Inactive": bounce_type == "HardBounce",
        "CanActivate": True,
        "Subject": "Your payment did not go through",
    }


def complaint(email: str = DEAD, event_id: int = 777):
    return {
        **bounce(email, event_id=event_id),
        "RecordType": "SpamComplaint",
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
    }


def post(client: Client, payload: dict, **headers: str):
    return client.post(TRACKING, payload, content_type="application/json", **headers)


def test_a_hard_bounce_marks_the_address_undeliverable_once_with_an_audit_record(client):
    assert post(client, bounce(), **basic_auth()).status_code == 200
    assert post(client, bounce(), **basic_auth()).status_code == 200  # delivered again

    suppression = SuppressedAddress.objects.get()
    assert suppression.reason == SuppressedAddress.Reason.BOUNCED
    assert (suppression.esp, suppression.event_id) == ("Postmark", "4323372036")
    assert suppression.address_masked == "g***@example.org"
    assert "gone.away" not in str(SuppressedAddress.objects.values().get()).lower()
    assert address_is_suppressed(address="gone.away@example.org")
    assert address_is_suppressed(address="Payer <GONE.AWAY@example.org>")
    [event] = AuditEvent.objects.filter(action="email.address_suppressed")
    assert event.details["event_id"] == "4323372036"


def test_a_spam_complaint_marks_the_address_undeliverable(client):
    assert post(client, complaint(), **basic_auth()).status_code == 200
    assert SuppressedAddress.objects.get().reason == SuppressedAddress.Reason.COMPLAINED


@pytest.mark.parametrize(
    "payload",
    [
        bounce(bounce_type="SoftBounce"),  # a full mailbox: Postmark tries again
        bounce(bounce_type="Transient"),
        {
            "RecordType": "Delivery",
            "Recipient": DEAD,
            "DeliveredAt": "2026-12-05T16:33:54Z",
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Details": "Test delivery webhook details",
        },
    ],
    ids=["soft-bounce", "transient", "delivered"],
)
def test_soft_bounces_and_deliveries_leave_the_address_alone(client, payload):
    assert post(client, payload, **basic_auth()).status_code == 200
    assert not SuppressedAddress.objects.exists()


@pytest.mark.parametrize(
    "headers",
    [{}, basic_auth("postmark:wrong-password-0123456789")],
    ids=["no-auth", "wrong-auth"],
)
def test_reports_without_the_webhook_secret_are_refused(client, headers):
    assert post(client, bounce(), **headers).status_code == 400
    assert not SuppressedAddress.objects.exists()


def test_without_a_configured_secret_the_webhook_does_not_exist(client, settings):
    settings.ANYMAIL = {}
    assert post(client, bounce(), **basic_auth()).status_code == 404
    assert not SuppressedAddress.objects.exists()


def test_the_same_address_bounced_again_by_a_new_event_stays_one_suppression(client):
    post(client, bounce(event_id=1), **basic_auth())
    post(client, bounce(event_id=2), **basic_auth())
    assert SuppressedAddress.objects.count() == 1


def welcome(to: str, capture) -> None:
    with capture(execute=True), transaction.atomic():
        email_send_template(
            to=to,
            template="welcome",
            context={"pricing_path": "/pricing/", "account_path": "/account/"},
            dedupe_key=f"welcome:{uuid.uuid4()}",
        )


def suppressed_count(template: str) -> float:
    value = REGISTRY.get_sample_value("tollgate_emails_suppressed_total", {"template": template})
    return value or 0.0


def test_suppressible_email_to_an_undeliverable_address_is_not_sent_but_counted(
    client, django_capture_on_commit_callbacks
):
    post(client, bounce(), **basic_auth())
    before = suppressed_count("welcome")
    welcome("gone.away@example.org", django_capture_on_commit_callbacks)
    welcome("someone.else@example.org", django_capture_on_commit_callbacks)

    assert [m.to for m in mail.outbox] == [["someone.else@example.org"]]
    assert suppressed_count("welcome") == before + 1
    held = OutboxMessage.objects.get(payload__suppressed=True)
    assert held.status == OutboxMessage.Status.DELIVERED  # done with: never retried
    assert held.payload["to"] == "g***@example.org"


def test_account_email_the_owner_asked_for_still_reaches_an_undeliverable_address(
    django_capture_on_commit_callbacks,
):
    address_suppress(address=DEAD, reason="bounced", esp="Postmark", event_id="1")
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        email_enqueue(
            to=DEAD,
            subject="Reset your password",
            text="Follow https://acme.test/reset/abc",
            html="",
            template="password_reset_key",
            dedupe_key="account-mail:1",
        )
    assert [m.subject for m in mail.outbox] == ["Reset your password"]


def test_confirming_the_address_makes_it_deliverable_again(
    client, django_capture_on_commit_callbacks
):
    address = "returning@example.org"
    address_suppress(address=address, reason="bounced", esp="Postmark", event_id="9")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/accounts/signup/",
            {"email": address, "password1": STRONG_PASSWORD, "password2": STRONG_PASSWORD},
        )
    # The confirmation email is account mail: it is sent although the address bounced before.
    link = next(
        link for link in links_in(last_mail_to(address)) if "/accounts/confirm-email/" in link
    )
    with django_capture_on_commit_callbacks(execute=True):
        client.post(re.sub(r"^https?://[^/]+", "", link))

    assert not address_is_suppressed(address=address)
    assert last_mail_to(address).subject.startswith("Welcome")  # sent after the clearing
    cleared = SuppressedAddress.objects.get()
    assert cleared.cleared_by == SuppressedAddress.ClearedBy.VERIFIED
    event = AuditEvent.objects.get(action="email.address_suppression_cleared")
    assert event.actor == User.objects.get(email=address)
    # The old report delivered again does not suppress the address a second time.
    assert address_suppress(address=address, reason="bounced", esp="Postmark", event_id="9") is None
    assert not address_is_suppressed(address=address)


@pytest.fixture
def staff_client(client: Client) -> Client:
    staff = User.objects.create_user(
        email="mail-staff@example.org", password=STRONG_PASSWORD, is_staff=True, is_superuser=True
    )
    client.force_login(staff)
    return client


def test_staff_find_an_address_by_its_full_text_and_clear_it_in_the_admin(staff_client):
    suppression = address_suppress(address=DEAD, reason="bounced", esp="Postmark", event_id="3")
    address_suppress(address="other@example.org", reason="complained", esp="Postmark")
    changelist = reverse("admin:notifications_suppressedaddress_changelist")

    found = staff_client.get(changelist, {"q": " gone.away@EXAMPLE.org "})
    assert found.status_code == 200
    assert b"g***@example.org" in found.content
    assert b"o***@example.org" not in found.content
    detail = staff_client.get(
        reverse("admin:notifications_suppressedaddress_change", args=[suppression.pk])
    )
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content

    response = staff_client.post(
        changelist, {"action": "clear", "_selected_action": [suppression.pk]}
    )
    assert response.status_code == 302
    assert not address_is_suppressed(address=DEAD)
    assert address_is_suppressed(address="other@example.org")
    event = AuditEvent.objects.get(action="email.address_suppression_cleared")
    assert event.actor.email == "mail-staff@example.org"
    assert event.details == {"cleared_by": "staff"}


def test_dunning_does_not_email_an_undeliverable_address(
    customer, price, django_capture_on_commit_callbacks
):
    add_card(customer, CARD_OK)
    with django_capture_on_commit_callbacks(execute=True), clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    address_suppress(address=customer.email, reason="bounced", esp="Postmark", event_id="5")
    mail.outbox.clear()

    with (
        django_capture_on_commit_callbacks(execute=True),
        clock.frozen(subscription.current_period_end),
    ):
        billing_run()

    assert PaymentAttempt.objects.filter(status="failed").exists()  # dunning went on
    assert mail.outbox == []
    held = OutboxMessage.objects.filter(payload__suppressed=True)
    assert held.exists()
    assert all(message.payload["to"] == "p***@example.org" for message in held)


def test_the_staff_customer_page_says_when_the_customers_email_is_undeliverable(
    staff_client, customer
):
    page = reverse("staff:customer", args=[customer.public_id])
    assert "email undeliverable" not in staff_client.get(page).text
    address_suppress(address=customer.email, reason="complained", esp="Postmark", event_id="8")
    assert "email undeliverable" in staff_client.get(page).text


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent writers need PostgreSQL (SQLite serializes all writers)",
)
def test_the_same_report_delivered_to_several_workers_at_once_suppresses_once():
    def report(index: int) -> SuppressedAddress | None:
        return address_suppress(address=DEAD, reason="bounced", esp="Postmark", event_id="42")

    outcomes = concurrency.race(report, 4)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert len([o for o in outcomes if o is not None]) == 1
    assert SuppressedAddress.objects.count() == 1
    assert AuditEvent.objects.filter(action="email.address_suppressed").count() == 1


@pytest.mark.parametrize(
    ("esp", "event", "expected"),
    [
        ("Brevo", {"event_type": "bounced", "esp_event": {"event": "hard_bounce"}}, "bounced"),
        ("Brevo", {"event_type": "bounced", "esp_event": {"event": "soft_bounce"}}, None),
        ("Amazon SES", {"event_type": "bounced", "description": "Permanent: General"}, "bounced"),
        ("Amazon SES", {"event_type": "bounced", "description": "Transient: MailboxFull"}, None),
        ("Mailgun", {"event_type": "rejected", "reject_reason": "invalid"}, "rejected"),
        ("Mailgun", {"event_type": "rejected", "reject_reason": "bounced"}, "rejected"),
        ("Mailgun", {"event_type": "rejected", "reject_reason": "blocked"}, None),
        ("Mailgun", {"event_type": "rejected", "reject_reason": "unsubscribed"}, None),
        ("SendGrid", {"event_type": "complained"}, "complained"),
        ("SendGrid", {"event_type": "deferred"}, None),
        ("SendGrid", {"event_type": "unsubscribed"}, None),
    ],
)
def test_which_normalized_reports_make_an_address_undeliverable(esp, event, expected):
    assert suppression_reason(AnymailTrackingEvent(**event), esp) == expected
