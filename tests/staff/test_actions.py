"""Staff actions through their forms: CSRF, a single-use token per form (a second submission does
the work once), clear errors for bad input, and the services doing (and auditing) the work."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import Client

from tests.billing.conftest import CARD_DECLINES_AFTER_ATTACH, CARD_OK, add_card, new_key
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.models import Invoice, PaymentAttempt, Refund
from tollgate.billing.states import InvoiceStatus, SubscriptionStatus
from tollgate.core import clock
from tollgate.core.errors import FormTokenInvalid
from tollgate.core.idempotency import form_token_redeem, idempotency_claim

pytestmark = pytest.mark.django_db


def form_token(response) -> str:
    match = re.search(r'name="form_token" value="([^"]+)"', response.text)
    assert match, response.text[:2000]
    return match.group(1)


@pytest.fixture
def paid(customer, price):
    add_card(customer, CARD_OK)
    subscription = services.subscription_start(
        customer=customer, price=price("pro"), idempotency_key=new_key()
    )
    return subscription, PaymentAttempt.objects.get(status="succeeded")


# --- Refunds ----------------------------------------------------------------------------------------
def refund_url(payment) -> str:
    return f"/staff/payments/{payment.public_id}/refund/"


def post_refund(client, payment, amount, token=None, **fields):
    token = token or form_token(client.get(refund_url(payment)))
    data = {
        "form_token": token,
        "amount": amount,
        "reason": "requested_by_customer",
        "note": "Asked by email",
    }
    return client.post(refund_url(payment), {**data, **fields})


def test_a_partial_refund_in_major_units_is_issued_exactly_and_audited(staff_client, paid, staff):
    payment = paid[1]
    response = post_refund(staff_client, payment, "12.50")
    assert response.status_code == 302
    assert response["Location"] == f"/staff/customers/{payment.invoice.customer.public_id}/"
    refund = Refund.objects.get()
    assert (refund.amount, refund.status, refund.actor, refund.note) == (
        1250,
        "succeeded",
        staff,
        "Asked by email",
    )
    page = staff_client.get(response["Location"]).text
    assert "Refunded $12.50 of" in page
    assert AuditEvent.objects.filter(action="billing.refund_succeeded", actor=staff).exists()


def test_submitting_the_refund_form_twice_refunds_once(staff_client, paid):
    payment = paid[1]
    token = form_token(staff_client.get(refund_url(payment)))
    assert post_refund(staff_client, payment, "5", token=token).status_code == 302
    assert post_refund(staff_client, payment, "5", token=token).status_code == 302
    assert Refund.objects.count() == 1
    payment.refresh_from_db()
    assert payment.amount_refunded == 500


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        ("29.01", "At most $29.00 can be refunded from this payment."),
        ("-1", "Enter an amount above zero."),
        ("0", "Enter an amount above zero."),
        ("0.00", "Enter an amount above zero."),
        ("12.505", "USD amounts have at most 2 decimal places."),
        ("twelve", "Enter an amount as a number, like 12.50."),
        ("1e3", "Enter an amount as a number, like 12.50."),
        ("", "This field is required."),
    ],
)
def test_a_bad_amount_is_refused_on_the_form(staff_client, paid, amount, error):
    payment = paid[1]
    response = post_refund(staff_client, payment, amount)
    assert response.status_code == 422
    assert error in response.text
    assert Refund.objects.count() == 0


def test_what_was_refunded_before_lowers_the_limit(staff_client, paid):
    payment = paid[1]
    post_refund(staff_client, payment, "20")
    response = post_refund(staff_client, payment, "9.01")
    assert "At most $9.00 can be refunded from this payment." in response.text
    assert post_refund(staff_client, payment, "9.00").status_code == 302
    assert "nothing can be refunded" in staff_client.get(refund_url(payment)).text.lower()


def test_a_token_of_another_form_or_person_is_refused(staff_client, paid, make_user):
    payment = paid[1]
    other = make_user("other-staff@example.org", is_staff=True)
    other_client = Client()
    other_client.force_login(other)
    token = form_token(other_client.get(refund_url(payment)))
    response = post_refund(staff_client, payment, "5", token=token)
    assert response.status_code == 422
    assert "This form has expired or was not issued to you" in response.text
    assert Refund.objects.count() == 0
    assert form_token(response) != token


def refused_without_token(client, url: str, fields: dict[str, str], token: str | None) -> None:
    """Posting ``url`` without its form token (or with an empty one) says why on the page and
    gives a fresh token to send the form again."""
    data = fields if token is None else {**fields, "form_token": token}
    response = client.post(url, data)
    assert response.status_code == 422
    alerts = re.findall(r'role="alert">(.*?)</', response.text, re.S)
    assert any(FormTokenInvalid.default_message in alert for alert in alerts), alerts
    assert form_token(response)


@pytest.mark.parametrize("token", [None, ""], ids=["missing", "empty"])
@pytest.mark.parametrize("action", ["refund", "cancel", "extend"])
def test_every_staff_form_without_its_token_says_why_and_gives_a_fresh_one(
    staff_client, paid, action, token
):
    subscription, payment = paid
    url, fields = {
        "refund": (refund_url(payment), {"amount": "5", "reason": "duplicate", "note": "Twice"}),
        "cancel": (f"/staff/subscriptions/{subscription.public_id}/cancel/", {"when": "now"}),
        "extend": (
            f"/staff/subscriptions/{subscription.public_id}/extend/",
            {"days": "7", "reason": "Outage"},
        ),
    }[action]
    refused_without_token(staff_client, url, fields, token)
    assert Refund.objects.count() == 0


@pytest.mark.parametrize("token", [None, ""], ids=["missing", "empty"])
def test_charging_an_invoice_without_the_forms_token_says_why(staff_client, customer, price, token):
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    invoice = Invoice.objects.get(status=InvoiceStatus.OPEN)
    refused_without_token(staff_client, f"/staff/invoices/{invoice.public_id}/retry/", {}, token)
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1


def test_the_refund_form_needs_csrf(paid, staff):
    payment = paid[1]
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    token = form_token(client.get(refund_url(payment)))
    response = client.post(
        refund_url(payment),
        {"form_token": token, "amount": "1", "reason": "other", "note": "x"},
    )
    assert response.status_code == 403
    assert Refund.objects.count() == 0


def test_a_payment_that_never_captured_cannot_be_refunded(staff_client, customer, price):
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    failed = PaymentAttempt.objects.get(status="failed")
    response = staff_client.get(refund_url(failed))
    assert "it was never captured" in response.text
    assert 'name="form_token"' not in response.text
    assert staff_client.post(refund_url(failed), {"amount": "1"}).status_code == 200
    assert Refund.objects.count() == 0


# --- Cancel and extend ----------------------------------------------------------------------------------
def test_cancel_now_with_a_prorated_refund(staff_client, customer, price, staff):
    add_card(customer, CARD_OK)
    with clock.frozen(clock.now() - dt.timedelta(days=14)):
        subscription = services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
    payment = PaymentAttempt.objects.get(status="succeeded")
    url = f"/staff/subscriptions/{subscription.public_id}/cancel/"
    token = form_token(staff_client.get(url))
    response = staff_client.post(url, {"form_token": token, "when": "now", "prorated_refund": "on"})
    assert response.status_code == 302
    assert response["Location"] == f"/staff/customers/{customer.public_id}/"
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.CANCELED
    refund = Refund.objects.get()
    assert 0 < refund.amount < payment.amount
    event = AuditEvent.objects.get(action="billing.subscription_canceled")
    assert (event.actor, event.details["refunded"]) == (staff, refund.amount)


def test_cancel_at_period_end(staff_client, paid):
    subscription = paid[0]
    url = f"/staff/subscriptions/{subscription.public_id}/cancel/"
    token = form_token(staff_client.get(url))
    response = staff_client.post(url, {"form_token": token, "when": "period_end"})
    assert response.status_code == 302
    subscription.refresh_from_db()
    assert (subscription.status, subscription.cancel_at_period_end) == ("active", True)
    assert Refund.objects.count() == 0


def test_a_prorated_refund_is_refused_when_canceling_at_period_end(staff_client, paid):
    subscription = paid[0]
    url = f"/staff/subscriptions/{subscription.public_id}/cancel/"
    token = form_token(staff_client.get(url))
    response = staff_client.post(
        url, {"form_token": token, "when": "period_end", "prorated_refund": "on"}
    )
    assert response.status_code == 422
    assert "A prorated refund is given only when canceling now." in response.text
    subscription.refresh_from_db()
    assert subscription.cancel_at_period_end is False


def test_a_refusal_from_the_service_is_shown_with_a_fresh_token(staff_client, paid):
    subscription = paid[0]
    services.subscription_cancel(
        subscription=subscription, at_period_end=False, idempotency_key=new_key()
    )
    url = f"/staff/subscriptions/{subscription.public_id}/cancel/"
    token = form_token(staff_client.get(url))
    response = staff_client.post(url, {"form_token": token, "when": "now"})
    assert response.status_code == 422
    assert "cannot go from canceled to canceled" in response.text
    assert form_token(response) != token


def test_extend_through_the_form(staff_client, paid, staff):
    subscription = paid[0]
    url = f"/staff/subscriptions/{subscription.public_id}/extend/"
    token = form_token(staff_client.get(url))
    data = {"form_token": token, "days": "10", "reason": "Outage credit"}
    assert staff_client.post(url, data).status_code == 302
    assert staff_client.post(url, data).status_code == 302  # the same form again: once
    before = subscription.current_period_end
    subscription.refresh_from_db()
    assert subscription.current_period_end == before + dt.timedelta(days=10)
    assert (
        AuditEvent.objects.filter(action="billing.subscription_extended", actor=staff).count() == 1
    )


@pytest.mark.parametrize(
    ("days", "error"),
    [
        ("0", "Ensure this value is greater than or equal to 1."),
        ("400", "Ensure this value is less than or equal to 366."),
        ("2.5", "Enter a whole number."),
    ],
)
def test_extend_refuses_bad_days(staff_client, paid, days, error):
    subscription = paid[0]
    url = f"/staff/subscriptions/{subscription.public_id}/extend/"
    token = form_token(staff_client.get(url))
    response = staff_client.post(url, {"form_token": token, "days": days, "reason": "x"})
    assert response.status_code == 422
    assert error in response.text


# --- Retrying an open invoice ------------------------------------------------------------------------------
def test_an_open_invoice_is_charged_now_once_per_form(staff_client, customer, price, staff):
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    invoice = Invoice.objects.get(status=InvoiceStatus.OPEN)
    url = f"/staff/invoices/{invoice.public_id}/retry/"
    token = form_token(staff_client.get(url))
    response = staff_client.post(url, {"form_token": token})
    assert response.status_code == 302
    assert staff_client.post(url, {"form_token": token}).status_code == 302
    attempts = PaymentAttempt.objects.filter(invoice=invoice).order_by("attempt_number")
    assert [(p.attempt_number, p.status) for p in attempts] == [(1, "failed"), (2, "failed")]
    started = AuditEvent.objects.filter(action="billing.payment_started", actor=staff)
    assert started.count() == 1
    page = staff_client.get(response["Location"]).text
    assert "was declined" in page


def test_a_paid_invoice_offers_no_retry(staff_client, paid):
    invoice = paid[1].invoice
    response = staff_client.get(f"/staff/invoices/{invoice.public_id}/retry/")
    assert "Only an open invoice can be charged." in response.text


def test_while_the_first_submission_runs_a_second_keeps_its_token_and_charges_nothing(
    staff_client, customer, price, staff
):
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    invoice = Invoice.objects.get(status=InvoiceStatus.OPEN)
    url = f"/staff/invoices/{invoice.public_id}/retry/"
    token = form_token(staff_client.get(url))
    # The first submission has claimed its key and is still with the gateway.
    idempotency_claim(
        scope=customer.public_id,
        key=form_token_redeem(
            token=token, purpose=f"staff_invoice_pay:{invoice.public_id}", owner=staff.public_id
        ),
        operation="invoice_pay",
        parameters={"invoice": invoice.public_id, "off_session": True},
    )
    response = staff_client.post(url, {"form_token": token})
    assert response.status_code == 422
    assert "still being processed" in response.text
    assert form_token(response) == token
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1


def test_a_refund_needs_a_chosen_reason_and_a_note(staff_client, paid):
    payment = paid[1]
    response = post_refund(staff_client, payment, "5", reason="", note="   ")
    assert response.status_code == 422
    assert response.text.count("This field is required.") == 2
    assert Refund.objects.count() == 0
