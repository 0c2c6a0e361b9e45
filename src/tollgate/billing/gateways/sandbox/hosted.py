"""What the sandbox's hosted pages do: the card form and the 3-D Secure step (sandbox only).

Like a processor's own pages, they act on the sandbox's records only. Tollgate learns the outcome
the way it learns a real gateway's: the sandbox signs an event with its webhook secret and delivers
it to the inbox (``inbox.event_receive``: verified, stored once, processed by the worker, whose
handlers call the billing services). The pages never call the billing services themselves.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.views.decorators.debug import sensitive_variables

from tollgate.billing.errors import LinkUnavailable
from tollgate.billing.gateways.base import GatewayRequestRefused, SetupResult, SetupStatus
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway, setup_session_expired
from tollgate.billing.gateways.sandbox.models import SandboxCharge, SandboxSetupSession
from tollgate.billing.inbound import inbox

# What each test card does, as the card form lists them (every number is in adapter.TEST_CARDS).
TEST_CARD_GUIDE = (
    ("4242 4242 4242 4242", "Saves; every charge succeeds."),
    ("4000 0000 0000 0002", "Declined when you save it (generic_decline)."),
    ("4000 0000 0000 9995", "Saves; every charge is declined (insufficient_funds)."),
    ("4000 0000 0000 0341", "Saves; every later charge is declined (generic_decline)."),
    ("4000 0025 0000 3155", "Saves; every charge asks for authentication (3-D Secure)."),
    ("4000 0000 0000 9979", "Saves; every charge is declined (stolen_card, no retries)."),
    ("4000 0000 0000 0408", "Saves; charges succeed but the answer is lost (a timeout)."),
    ("5555 5555 5555 4444", "Mastercard; saves, every charge succeeds."),
    ("3782 822463 10005", "American Express; saves, every charge succeeds."),
)

_SETUP_DECLINES = {
    "invalid_number": "The card number is not valid. Check it and try again.",
    "expired_card": "This card has expired. Use another card.",
    "test_mode_live_card": (
        "Your card was declined: this page is in test mode, where real cards are refused. "
        "Use one of the test cards listed below."
    ),
}
_GENERIC_DECLINE = "Your card was declined. Try another card."


def setup_session_open(*, reference: str) -> SandboxSetupSession:
    """The setup session behind a card-form link, if the link can still be used."""
    session = SandboxSetupSession.objects.filter(reference=reference).first()
    if session is None:
        raise LinkUnavailable(
            title="This card link is not valid",
            message="Check the link, or start again from your billing page.",
            status=404,
        )
    if session.status == SandboxSetupSession.Status.SUCCEEDED:
        raise LinkUnavailable(
            title="This card link was already used",
            message="The card was saved. To add another card, start again from your billing page.",
            status=409,
        )
    if setup_session_expired(session):
        raise LinkUnavailable(
            title="This card link has expired",
            message="Card links work for 24 hours. Start again from your billing page.",
            status=410,
        )
    return session


@sensitive_variables("number")
def card_submit(
    *, session: SandboxSetupSession, number: str, exp_month: int, exp_year: int
) -> SetupResult:
    """Save the card entered on the hosted form and tell Tollgate with a signed
    ``setup_session.succeeded`` (or ``.failed``) event. Raises :class:`LinkUnavailable` when the
    session was used or expired in the meantime."""
    gateway = SandboxGateway()
    try:
        result = gateway.setup_submit(
            session_reference=session.reference,
            number=number,
            exp_month=exp_month,
            exp_year=exp_year,
        )
    except GatewayRequestRefused:
        setup_session_open(reference=session.reference)  # says which: used or expired
        raise
    succeeded = result.status == SetupStatus.SUCCEEDED
    _deliver(
        event_type="setup_session.succeeded" if succeeded else "setup_session.failed",
        data={
            "reference": session.reference,
            "customer_reference": session.customer_reference,
            "status": str(result.status),
            "failure_code": result.failure_code,
        },
    )
    return result


def decline_message(failure_code: str) -> str:
    """What the card form tells the customer about a card the sandbox refused to save."""
    return _SETUP_DECLINES.get(failure_code, _GENERIC_DECLINE)


def return_url_for(*, session: SandboxSetupSession) -> str:
    """Where the browser goes after the card is saved: the session's return URL, with the session
    and the outcome in its query (as Stripe adds ``setup_intent`` and ``redirect_status``)."""
    parts = urlsplit(session.return_url)
    query = [
        *parse_qsl(parts.query, keep_blank_values=True),
        ("setup_session", session.reference),
        ("redirect_status", "succeeded"),
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


def charge_awaiting_authentication(*, reference: str) -> SandboxCharge:
    """The charge behind an authentication link, if it is still waiting for the customer."""
    charge = charge_found(reference=reference)
    if charge.status != SandboxCharge.Status.REQUIRES_ACTION:
        raise LinkUnavailable(
            title="This payment was already authenticated",
            message=(
                "Authentication for this payment is finished. If the payment failed, your "
                "billing page lets you pay again."
            ),
            status=409,
        )
    return charge


def charge_found(*, reference: str) -> SandboxCharge:
    """The charge behind an authentication link, in whatever state."""
    charge = SandboxCharge.objects.filter(reference=reference).first()
    if charge is None:
        raise LinkUnavailable(
            title="This authentication link is not valid",
            message="Check the link in your email, or pay from your billing page.",
            status=404,
        )
    return charge


def authentication_finish(*, reference: str, authenticated: bool) -> SandboxCharge:
    """The customer completed (or failed) 3-D Secure for a charge: settle it on the sandbox and
    tell Tollgate with a signed ``charge.succeeded`` or ``charge.failed`` event. Raises
    :class:`LinkUnavailable` for an unknown charge or one no longer awaiting authentication."""
    try:
        payload, signature = SandboxGateway().action_complete(
            charge_reference=reference, authenticated=authenticated
        )
    except GatewayRequestRefused:
        charge_awaiting_authentication(reference=reference)  # says which: unknown or finished
        raise
    inbox.event_receive(gateway=SandboxGateway.name, payload=payload, signature=signature)
    return charge_found(reference=reference)


def _deliver(*, event_type: str, data: dict[str, Any]) -> None:
    payload, signature = SandboxGateway().event_build(event_type=event_type, data=data)
    inbox.event_receive(gateway=SandboxGateway.name, payload=payload, signature=signature)
