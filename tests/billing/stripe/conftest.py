"""Stripe gateway tests: a real localstripe server on a free loopback port for the whole session,
the official SDK pointed at it, and the customer's browser side (what Stripe.js sends) replayed
with plain HTTP requests, exactly as localstripe's Stripe.js stand-in sends them."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe

from tests.billing.stripe.peer import StripePeer
from tollgate.billing import services
from tollgate.billing.gateways.stripe.adapter import StripeGateway
from tollgate.billing.gateways.stripe.conf import API_VERSION
from tollgate.billing.inbound import inbox
from tollgate.billing.models import Customer, InboundEvent, PaymentMethod
from tollgate.core import clock

CARD_OK = "4242424242424242"
CARD_DECLINES_AFTER_ATTACH = "4000000000000341"
CARD_REQUIRES_AUTHENTICATION = "4000002500003155"
CARD_DECLINED = "4000000000000002"
# The keys localstripe is given: any test-mode-shaped string (assembled: no key-shaped literal).
SECRET_KEY = "_".join(("sk", "test", "tollgate"))
PUBLISHABLE_KEY = "_".join(("pk", "test", "tollgate"))
LOCALSTRIPE = Path(sys.executable).with_name("localstripe")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"localstripe exited with {process.returncode}")
        try:
            if requests.get(f"{url}/js.stripe.com/v3/", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("localstripe did not start in time")


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    """A localstripe server of this test session, started without a shell, stopped by its PID."""
    port = _free_port()
    process = subprocess.Popen(
        [str(LOCALSTRIPE), "--port", str(port), "--from-scratch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def webhook_secrets() -> list[str]:
    return [f"whsec_{secrets.token_urlsafe(32)}"]


@pytest.fixture
def stripe_gateway(
    settings: Any, localstripe_url: str, webhook_secrets: list[str]
) -> StripeGateway:
    """Stripe as the configured gateway, its SDK pointed at the session's localstripe, emptied
    first (each test's database starts empty, so Stripe's side does too)."""
    requests.delete(f"{localstripe_url}/_config/data", timeout=10).raise_for_status()
    settings.PAYMENT_GATEWAY = "stripe"
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_PUBLISHABLE_KEY = PUBLISHABLE_KEY
    settings.STRIPE_WEBHOOK_SECRETS = webhook_secrets
    settings.STRIPE_API_BASE = localstripe_url
    settings.STRIPE_JS_URL = f"{localstripe_url}/js.stripe.com/v3/"
    settings.CSP_EXTRA = {
        "script-src": [localstripe_url],
        "frame-src": [localstripe_url],
        "connect-src": [localstripe_url],
    }
    return StripeGateway()


class Browser:
    """What Stripe.js does in the customer's browser (with the publishable key only)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(
            f"{self.base}{path}", json={"key": PUBLISHABLE_KEY, **body}, timeout=10
        )
        return dict(response.json())

    def confirm_card_setup(
        self, client_secret: str, number: str, *, authenticate: bool = True
    ) -> dict[str, Any]:
        setup_intent = client_secret.split("_secret_")[0]
        card = {"number": number, "exp_month": "12", "exp_year": "2099", "cvc": "123"}
        body = self._post(
            f"/v1/setup_intents/{setup_intent}/confirm",
            {
                "use_stripe_sdk": True,
                "client_secret": client_secret,
                "payment_method_data": {"type": "card", "card": card},
            },
        )
        if body.get("status") == "requires_action":
            action = "confirm" if authenticate else "cancel"
            body = self._post(
                f"/v1/setup_intents/{setup_intent}/{action}",
                {"use_stripe_sdk": True, "client_secret": client_secret},
            )
        return body

    def confirm_card_payment(self, client_secret: str, *, success: bool) -> dict[str, Any]:
        intent = client_secret.split("_secret_")[0]
        outcome = "true" if success else "false"
        return self._post(
            f"/v1/payment_intents/{intent}/_authenticate?success={outcome}",
            {"client_secret": client_secret},
        )


@pytest.fixture
def browser(localstripe_url: str) -> Browser:
    return Browser(localstripe_url)


def add_card(
    gateway: StripeGateway, browser: Browser, customer: Customer, number: str = CARD_OK
) -> PaymentMethod:
    """The customer saves a card on Tollgate's card page (Stripe.js confirms the SetupIntent);
    Tollgate attaches it when the browser comes back."""
    session = services.payment_method_setup_start(
        customer=customer, return_url="https://tollgate.test/billing/"
    )
    intent = gateway.setup_intent_get(reference=session.reference)
    result = browser.confirm_card_setup(intent.client_secret, number)
    assert result.get("status") == "succeeded", result
    return services.payment_method_attach(customer=customer, setup_reference=session.reference)


@pytest.fixture
def peer(
    stripe_gateway: StripeGateway, settings: Any, localstripe_url: str
) -> Iterator[StripePeer]:
    """The SDK talks to localstripe through the local peer (idempotency keys honoured, intents
    listed by customer, answers that can be lost on the way back)."""
    running = StripePeer(localstripe_url).start()
    settings.STRIPE_API_BASE = running.url
    try:
        yield running
    finally:
        running.stop()


# --- Events as Stripe sends them ------------------------------------------------------------------
def event_payload(
    event_type: str, obj: dict[str, Any], *, event_id: str = "", created: int | None = None
) -> bytes:
    """An event as Stripe sends it (the fields Tollgate reads, and a few it does not)."""
    return json.dumps(
        {
            "id": event_id or f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "api_version": API_VERSION,
            "created": int(clock.now().timestamp()) if created is None else created,
            "livemode": False,
            "pending_webhooks": 1,
            "type": event_type,
            "data": {"object": obj},
        },
        indent=2,
    ).encode()


def header_for(payload: bytes, *signing_secrets: str, at: dt.datetime | None = None) -> str:
    """``Stripe-Signature`` as Stripe builds it: one ``v1`` per secret (several during a roll)."""
    timestamp = int((at or clock.now()).timestamp())
    signed = f"{timestamp}.{payload.decode()}"
    signatures = ",".join(
        "v1=" + stripe.WebhookSignature._compute_signature(signed, secret)
        for secret in signing_secrets
    )
    return f"t={timestamp},{signatures}"


def deliver(payload: bytes, secret: str) -> InboundEvent:
    """Receive and process an event as the endpoint and the worker do."""
    receipt = inbox.event_receive(
        gateway="stripe", payload=payload, signature=header_for(payload, secret)
    )
    event = receipt.event
    inbox.event_process(event_id=event.pk)
    event.refresh_from_db()
    return event


def to_dict(obj: Any) -> dict[str, Any]:
    """A Stripe object as the JSON an event carries."""
    return json.loads(json.dumps(obj.to_dict(for_json=True), default=str))
