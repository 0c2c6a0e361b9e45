"""The sandbox's hosted pages through the Django test client: the card form with every test card,
the 3-D Secure step, links that cannot be used, TEST MODE everywhere, nothing outside the sandbox,
and no card number in any log or table."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.apps import apps
from django.core import mail, serializers
from django.test import Client

from tests.billing.conftest import (
    CARD_DECLINED,
    CARD_DECLINES_AFTER_ATTACH,
    CARD_OK,
    CARD_REQUIRES_AUTHENTICATION,
    new_key,
)
from tests.ops.conftest import CapturedLogs, captured_logs  # noqa: F401  (fixture)
from tests.security.test_headers import assert_inline_code_carries_the_nonce
from tollgate.billing import services
from tollgate.billing.errors import LinkUnavailable
from tollgate.billing.gateways.sandbox import hosted
from tollgate.billing.gateways.sandbox.adapter import TEST_CARDS
from tollgate.billing.gateways.sandbox.hosted import TEST_CARD_GUIDE
from tollgate.billing.gateways.sandbox.models import (
    SandboxCard,
    SandboxCharge,
    SandboxSetupSession,
)
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import InboundEvent, Invoice, PaymentAttempt, PaymentMethod
from tollgate.billing.states import InvoiceStatus, PaymentStatus, SubscriptionStatus
from tollgate.core import clock

pytestmark = pytest.mark.django_db

RETURN_URL = "https://tollgate.test/billing/?tab=cards"
_CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def spaced(number: str) -> str:
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


def card_link(customer) -> str:
    """Tollgate opens a card setup and sends the customer to the sandbox's hosted form."""
    session = services.payment_method_setup_start(customer=customer, return_url=RETURN_URL)
    return urlsplit(session.url).path


def card_details(number: str, **overrides: str) -> dict[str, str]:
    return {"number": number, "expiry": "12/34", "cvc": "123", "name": "Jo Payer", **overrides}


def submit(client: Client, path: str, data: dict[str, str], on_commit) -> object:
    """POST a hosted form as a browser does (with the CSRF token of the page), running on-commit
    work: the inbox's processing of the event the sandbox delivers."""
    page = client.get(path)
    assert page.status_code == 200, page.content[:300]
    token = _CSRF_FIELD.search(page.content.decode()).group(1)
    with on_commit(execute=True):
        return client.post(path, {**data, "csrfmiddlewaretoken": token})


@pytest.fixture
def browser() -> Client:
    return Client(enforce_csrf_checks=True)


def assert_test_mode(response) -> None:
    html = response.content.decode()
    assert '<p class="test-mode" role="note"><strong>TEST MODE</strong>' in html
    assert_inline_code_carries_the_nonce(response)


# --- Only while the sandbox is the gateway, TEST MODE on every view ---------------------------------


def test_the_pages_and_the_webhook_are_not_served_when_another_gateway_is_configured(
    client, customer, settings
):
    path = card_link(customer)
    settings.PAYMENT_GATEWAY = "stripe"
    for page in (path, "/sandbox/authenticate/sbch_x/", "/sandbox/authenticate/sbch_x/done/"):
        response = client.get(page)
        assert response.status_code == 404
        assert "TEST MODE" not in response.content.decode()
    assert client.post(path, card_details(CARD_OK)).status_code == 404
    assert not SandboxCard.objects.exists()
    webhook = client.post("/webhooks/sandbox/", b"{}", content_type="application/json")
    assert webhook.status_code == 404
    assert webhook.json()["error"]["code"] == "not_found"


def test_every_view_says_test_mode(browser, customer, price, django_capture_on_commit_callbacks):
    path = card_link(customer)
    form = browser.get(path)
    assert_test_mode(form)
    invalid = browser.post(path, card_details("4242 4242 4242 4241"))
    assert invalid.status_code == 403  # no CSRF token: refused before the view
    client = Client()
    assert_test_mode(client.post(path, card_details("4242 4242 4242 4241")))
    assert_test_mode(browser.get("/sandbox/setup/sbseti_unknown/"))
    submit(
        browser,
        path,
        card_details(CARD_REQUIRES_AUTHENTICATION),
        django_capture_on_commit_callbacks,
    )
    assert_test_mode(browser.get(path))  # the used link
    services.subscription_start(
        customer=customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    action = urlsplit(PaymentAttempt.objects.get().action_url).path
    assert_test_mode(browser.get(action))
    assert_test_mode(Client().post(action, {"outcome": "maybe"}))
    submit(browser, action, {"outcome": "complete"}, django_capture_on_commit_callbacks)
    assert_test_mode(browser.get(f"{action}done/"))
    assert_test_mode(browser.get(action))  # the used link


def test_the_card_form_labels_every_field_and_lists_the_test_cards(client, customer):
    html = client.get(card_link(customer)).content.decode()
    for field, label in (
        ("number", "Card number"),
        ("expiry", "Expiry date (MM/YY)"),
        ("cvc", "Security code (CVC)"),
        ("name", "Name on card"),
    ):
        assert f'<label for="id_{field}">{label}</label>' in html
        assert f'id="id_{field}"' in html
    assert 'autocomplete="cc-number"' in html
    for number, _behaviour in TEST_CARD_GUIDE:
        assert f"<code>{number}</code>" in html


def test_the_guide_lists_exactly_the_sandbox_test_cards():
    assert {number.replace(" ", "") for number, _ in TEST_CARD_GUIDE} == set(TEST_CARDS)


# --- The card form --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("details", "field", "message"),
    [
        (card_details("4242 4242 4242 4241"), "number", "This card number is not valid"),
        (card_details("4242 4242"), "number", "13 to 19 digits"),
        (card_details("4242 4242 4242 424x"), "number", "13 to 19 digits"),
        (card_details(CARD_OK, expiry="01/20"), "expiry", "This card has expired"),
        (card_details(CARD_OK, expiry="13/30"), "expiry", "MM/YY"),
        (card_details(CARD_OK, expiry="1230"), "expiry", "MM/YY"),
        (card_details(CARD_OK, expiry="12/99"), "expiry", "too far in the future"),
        (card_details(CARD_OK, cvc="12a"), "cvc", "3 or 4 digits"),
        (card_details(CARD_OK, cvc="1234"), "cvc", "3-digit security code"),
        (card_details("3782 822463 10005", cvc="123"), "cvc", "4-digit security code"),
        (card_details(CARD_OK, name=""), "name", "This field is required"),
    ],
)
def test_the_card_form_explains_what_is_wrong_and_saves_nothing(
    client, customer, details, field, message
):
    path = card_link(customer)
    with clock.frozen(dt.datetime(2026, 5, 1, tzinfo=dt.UTC)):
        response = client.post(path, details)
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(
        rf'<div class="field field-invalid">\s*<label for="id_{field}">.*?{re.escape(message)}',
        html,
        flags=re.DOTALL,
    ), html
    # The number and the security code are never sent back to the browser.
    for secret_field in ("number", "cvc"):
        tag = re.search(rf'<input[^>]*id="id_{secret_field}"[^>]*>', html).group(0)
        assert "value=" not in tag, tag
    assert details["number"] not in html.split("<h2>Test cards</h2>")[0]
    assert not SandboxCard.objects.exists()
    assert not InboundEvent.objects.exists()
    assert SandboxSetupSession.objects.get().status == SandboxSetupSession.Status.OPEN


def test_4242_is_saved_and_the_browser_returns_to_tollgate_which_attaches_the_card(
    browser, customer, django_capture_on_commit_callbacks
):
    path = card_link(customer)
    response = submit(
        browser, path, card_details(spaced(CARD_OK)), django_capture_on_commit_callbacks
    )
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    session = SandboxSetupSession.objects.get()
    assert (location.scheme, location.netloc, location.path) == (
        "https",
        "tollgate.test",
        "/billing/",
    )
    assert parse_qs(location.query) == {
        "tab": ["cards"],
        "setup_session": [session.reference],
        "redirect_status": ["succeeded"],
    }
    event = InboundEvent.objects.get()
    assert (event.gateway, event.type, event.status, event.attempts) == (
        "sandbox",
        "setup_session.succeeded",
        InboundEvent.Status.PROCESSED,
        1,
    )
    method = PaymentMethod.objects.get(customer=customer)
    assert (method.brand, method.last4, method.exp_month, method.exp_year, method.is_default) == (
        "visa",
        "4242",
        12,
        2034,
        True,
    )
    assert method.gateway_token == session.card.token


def test_a_card_declined_on_setup_shows_the_decline_and_the_link_can_be_used_again(
    browser, customer, django_capture_on_commit_callbacks
):
    path = card_link(customer)
    declined = submit(
        browser, path, card_details(spaced(CARD_DECLINED)), django_capture_on_commit_callbacks
    )
    assert declined.status_code == 200
    assert "Your card was declined. Try another card." in declined.content.decode()
    assert SandboxSetupSession.objects.get().failure_code == "generic_decline"
    event = InboundEvent.objects.get()
    assert (event.type, event.status) == ("setup_session.failed", InboundEvent.Status.PROCESSED)
    assert not PaymentMethod.objects.exists()
    saved = submit(browser, path, card_details(CARD_OK), django_capture_on_commit_callbacks)
    assert saved.status_code == 302
    assert PaymentMethod.objects.get().last4 == "4242"


def test_a_real_card_number_is_refused_in_test_mode(client, customer):
    response = client.post(card_link(customer), card_details("4111 1111 1111 1111"))
    assert "real cards are refused" in response.content.decode()
    assert not SandboxCard.objects.exists()


@pytest.mark.parametrize(("number", "behaviour"), TEST_CARD_GUIDE)
def test_each_test_card_goes_through_the_hosted_form_as_documented(
    browser, customer, django_capture_on_commit_callbacks, number, behaviour
):
    cvc = "1234" if number.startswith("3") else "123"
    response = submit(
        browser,
        card_link(customer),
        card_details(number, cvc=cvc),
        django_capture_on_commit_callbacks,
    )
    if number.replace(" ", "") == CARD_DECLINED:
        assert response.status_code == 200
        assert "declined" in response.content.decode()
        assert not PaymentMethod.objects.exists()
    else:
        assert response.status_code == 302, behaviour
        assert response["Location"].startswith("https://tollgate.test/billing/")
        assert PaymentMethod.objects.get(customer=customer).last4 == number[-4:]


def test_0341_saves_fine_and_the_charge_after_it_is_declined(
    browser, customer, price, django_capture_on_commit_callbacks
):
    response = submit(
        browser,
        card_link(customer),
        card_details(spaced(CARD_DECLINES_AFTER_ATTACH)),
        django_capture_on_commit_callbacks,
    )
    assert response.status_code == 302
    assert PaymentMethod.objects.get(customer=customer).last4 == "0341"
    subscription = services.subscription_start(
        customer=customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    payment = PaymentAttempt.objects.get()
    assert (payment.status, payment.decline_code) == (PaymentStatus.FAILED, "generic_decline")
    assert subscription.status == SubscriptionStatus.INCOMPLETE


def test_a_new_card_on_the_hosted_form_pays_the_open_invoice(
    browser, customer, price, django_capture_on_commit_callbacks
):
    submit(
        browser,
        card_link(customer),
        card_details(CARD_DECLINES_AFTER_ATTACH),
        django_capture_on_commit_callbacks,
    )
    services.subscription_start(
        customer=customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    assert Invoice.objects.get().status == InvoiceStatus.OPEN
    submit(browser, card_link(customer), card_details(CARD_OK), django_capture_on_commit_callbacks)
    invoice = Invoice.objects.get()
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.payments.filter(status=PaymentStatus.SUCCEEDED).count() == 1
    assert customer.subscriptions.get().status == SubscriptionStatus.ACTIVE


# --- Links that cannot be used ------------------------------------------------------------------------


def test_a_used_card_link_says_so(browser, customer, django_capture_on_commit_callbacks):
    path = card_link(customer)
    submit(browser, path, card_details(CARD_OK), django_capture_on_commit_callbacks)
    again = browser.get(path)
    assert again.status_code == 409
    assert "This card link was already used" in again.content.decode()
    assert Client().post(path, card_details(CARD_OK)).status_code == 409
    assert SandboxCard.objects.count() == 1


def test_an_expired_card_link_says_so(client, customer):
    path = card_link(customer)
    later = SandboxSetupSession.objects.get().created_at + dt.timedelta(hours=24)
    with clock.frozen(later - dt.timedelta(seconds=1)):
        assert client.get(path).status_code == 200
    with clock.frozen(later):
        page = client.get(path)
        posted = client.post(path, card_details(CARD_OK))
    assert page.status_code == 410
    assert "This card link has expired" in page.content.decode()
    assert posted.status_code == 410
    assert not SandboxCard.objects.exists()


def test_a_card_link_used_or_expired_while_its_form_was_open_says_so(customer):
    card_link(customer)
    session = hosted.setup_session_open(reference=SandboxSetupSession.objects.get().reference)
    card = {"number": CARD_OK, "exp_month": 12, "exp_year": 2034}
    with (
        clock.frozen(session.created_at + dt.timedelta(hours=24)),
        pytest.raises(LinkUnavailable) as expired,
    ):
        hosted.card_submit(session=session, **card)
    assert (expired.value.status, expired.value.title) == (410, "This card link has expired")
    assert hosted.card_submit(session=session, **card).card.last4 == "4242"
    with pytest.raises(LinkUnavailable) as used:
        hosted.card_submit(session=session, **card)
    assert (used.value.status, used.value.title) == (409, "This card link was already used")


def test_unknown_links_say_so(client):
    setup = client.get("/sandbox/setup/sbseti_unknown/")
    assert setup.status_code == 404
    assert "This card link is not valid" in setup.content.decode()
    for path in ("/sandbox/authenticate/sbch_unknown/", "/sandbox/authenticate/sbch_unknown/done/"):
        response = client.get(path)
        assert response.status_code == 404
        assert "This authentication link is not valid" in response.content.decode()
    assert (
        client.post("/sandbox/authenticate/sbch_unknown/", {"outcome": "complete"}).status_code
        == 404
    )


# --- 3-D Secure (4000 0025 0000 3155) ------------------------------------------------------------------


@pytest.fixture
def awaiting_authentication(browser, customer, price, django_capture_on_commit_callbacks):
    """A customer who saved the 3155 card on the hosted form and started a subscription: its first
    payment requires authentication. Returns the authentication page's path."""
    submit(
        browser,
        card_link(customer),
        card_details(spaced(CARD_REQUIRES_AUTHENTICATION)),
        django_capture_on_commit_callbacks,
    )
    subscription = services.subscription_start(
        customer=customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    assert subscription.status == SubscriptionStatus.INCOMPLETE
    payment = PaymentAttempt.objects.get()
    assert payment.status == PaymentStatus.REQUIRES_ACTION
    return urlsplit(payment.action_url).path


def test_the_authentication_page_offers_both_outcomes_as_forms(browser, awaiting_authentication):
    page = browser.get(awaiting_authentication)
    html = page.content.decode()
    assert page.status_code == 200
    assert "$29.00" in html
    assert html.count('<form method="post"') >= 2  # the two outcomes (and the header's sign-out)
    assert '<button type="submit">Complete authentication</button>' in html
    assert '<button type="submit" class="button-secondary">Fail authentication</button>' in html
    assert html.count('name="csrfmiddlewaretoken"') >= 2
    refused = browser.post(awaiting_authentication, {"outcome": "complete"})
    assert refused.status_code == 403  # without the CSRF token
    assert SandboxCharge.objects.get().status == SandboxCharge.Status.REQUIRES_ACTION


def test_completing_authentication_pays_the_invoice_through_a_signed_event(
    browser, customer, awaiting_authentication, django_capture_on_commit_callbacks
):
    mail.outbox.clear()
    response = submit(
        browser,
        awaiting_authentication,
        {"outcome": "complete"},
        django_capture_on_commit_callbacks,
    )
    assert response.status_code == 302
    assert response["Location"] == f"{awaiting_authentication}done/"
    done = browser.get(response["Location"])
    assert "Payment confirmed" in done.content.decode()
    event = InboundEvent.objects.get(type="charge.succeeded")
    assert (event.status, event.attempts, event.last_error) == (
        InboundEvent.Status.PROCESSED,
        1,
        "",
    )
    payment = PaymentAttempt.objects.get()
    assert event.payload["idempotency_key"] == payment.idempotency_key
    assert payment.status == PaymentStatus.SUCCEEDED
    assert Invoice.objects.get().status == InvoiceStatus.PAID
    assert customer.subscriptions.get().status == SubscriptionStatus.ACTIVE
    assert [message.subject for message in mail.outbox if "Receipt" in message.subject]
    assert ledger_check().ok
    assert browser.get(awaiting_authentication).status_code == 409


def test_failing_authentication_fails_the_payment_through_a_signed_event(
    browser, customer, awaiting_authentication, django_capture_on_commit_callbacks
):
    response = submit(
        browser, awaiting_authentication, {"outcome": "fail"}, django_capture_on_commit_callbacks
    )
    done = browser.get(response["Location"])
    assert "Payment not confirmed" in done.content.decode()
    assert InboundEvent.objects.get(type="charge.failed").status == InboundEvent.Status.PROCESSED
    payment = PaymentAttempt.objects.get()
    assert (payment.status, payment.decline_code) == (
        PaymentStatus.FAILED,
        "authentication_required",
    )
    assert Invoice.objects.get().status == InvoiceStatus.OPEN
    assert customer.subscriptions.get().status == SubscriptionStatus.INCOMPLETE


def test_the_done_page_sends_an_unfinished_authentication_back(client, awaiting_authentication):
    response = client.get(f"{awaiting_authentication}done/")
    assert response.status_code == 302
    assert response["Location"] == awaiting_authentication


def test_an_unknown_outcome_changes_nothing(client, awaiting_authentication):
    response = client.post(awaiting_authentication, {"outcome": "maybe"})
    assert response.status_code == 400
    assert "Choose whether the authentication completes or fails." in response.content.decode()
    assert SandboxCharge.objects.get().status == SandboxCharge.Status.REQUIRES_ACTION
    assert not InboundEvent.objects.filter(type__startswith="charge.").exists()


# --- No card number in any log or table ------------------------------------------------------------


def test_card_numbers_never_reach_a_log_or_the_database(
    captured_logs: CapturedLogs,  # noqa: F811
    browser,
    customer,
    price,
    django_capture_on_commit_callbacks,
):
    numbers = ["4242424242424241", CARD_DECLINED, "4111111111111111", CARD_REQUIRES_AUTHENTICATION]
    path = card_link(customer)
    for number in numbers:
        submit(browser, path, card_details(spaced(number)), django_capture_on_commit_callbacks)
    services.subscription_start(
        customer=customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    action = urlsplit(PaymentAttempt.objects.get().action_url).path
    submit(browser, action, {"outcome": "complete"}, django_capture_on_commit_callbacks)
    assert Invoice.objects.get().status == InvoiceStatus.PAID

    logged = captured_logs.text
    assert "inbox.stored" in logged  # the capture saw the journey
    assert captured_logs.events("request")
    stored = "".join(
        serializers.serialize("json", model.objects.all()) for model in apps.get_models()
    )
    for number in numbers:
        for form in (number, spaced(number), number[:12]):
            assert form not in logged, form
            assert form not in stored, form
