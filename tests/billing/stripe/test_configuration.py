"""Stripe's configuration: production refuses test keys (unless allowed) and the offline sandbox
(unless allowed), live keys are refused outside production, and the card page loads Stripe.js under
the strict nonce CSP only while Stripe is the gateway."""

from __future__ import annotations

import re

import pytest

from tests.billing.stripe.conftest import PUBLISHABLE_KEY
from tollgate.billing import services
from tollgate.config.production import payment_gateway_problems

pytestmark = pytest.mark.django_db


def key(kind: str, mode: str) -> str:
    """A placeholder of a Stripe key's shape (``<kind>_<mode>_...``), assembled at run time so that
    no key-shaped literal stands in the repository."""
    return "_".join((kind, mode, "placeholder"))


LIVE = {"stripe_secret_key": key("sk", "live"), "stripe_publishable_key": key("pk", "live")}
TEST = {"stripe_secret_key": key("sk", "test"), "stripe_publishable_key": key("pk", "test")}


def problems(**overrides) -> list[str]:
    options = {
        "gateway": "stripe",
        "production": True,
        "allow_sandbox": False,
        **LIVE,
        "stripe_webhook_secrets": ["whsec_new", "whsec_old"],
        "stripe_allow_test_keys": False,
        "stripe_urls": ["https://api.stripe.com", "https://js.stripe.com/v3/"],
    }
    return payment_gateway_problems(**{**options, **overrides})


def test_live_keys_with_signing_secrets_are_accepted_in_production():
    assert problems() == []


def test_production_refuses_test_keys_unless_explicitly_allowed():
    assert any("test-mode keys" in problem for problem in problems(**TEST))
    assert problems(**TEST, stripe_allow_test_keys=True) == []


def test_live_keys_are_refused_outside_production():
    assert any("live-mode keys" in problem for problem in problems(production=False))
    assert problems(production=False, **TEST) == []


def test_restricted_keys_are_accepted():
    assert problems(stripe_secret_key=key("rk", "live")) == []


def test_missing_or_mixed_keys_and_missing_secrets_are_all_reported_at_once():
    found = "\n".join(
        problems(
            stripe_secret_key="",
            stripe_publishable_key=key("pk", "test"),
            stripe_webhook_secrets=[],
            stripe_urls=["http://api.stripe.com"],
        )
    )
    for fragment in ("SECRET_KEY", "WEBHOOK_SECRETS", "https://"):
        assert fragment in found
    assert "mix test mode and live mode" in "\n".join(
        problems(stripe_publishable_key=key("pk", "test"))
    )


def test_production_refuses_the_sandbox_unless_explicitly_allowed():
    assert any("sandbox" in problem for problem in problems(gateway="sandbox"))
    assert problems(gateway="sandbox", allow_sandbox=True) == []
    assert problems(gateway="sandbox", production=False) == []


def test_the_card_page_loads_stripe_js_with_the_nonce_and_no_inline_script(
    client, stripe_gateway, customer, localstripe_url
):
    session = services.payment_method_setup_start(
        customer=customer, return_url="https://tollgate.test/billing/?plan=pro"
    )
    page = client.get(session.url.removeprefix("http://127.0.0.1:8000"))

    assert page.status_code == 200
    html = page.content.decode()
    policy = page["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.DOTALL)
    assert [body for _, body in scripts] == ["", ""]  # no inline code
    assert all(f'nonce="{nonce}"' in attributes for attributes, _ in scripts)
    assert f'src="{localstripe_url}/js.stripe.com/v3/"' in html
    assert "/static/tollgate/stripe-card.js" in html
    for directive in ("script-src", "frame-src", "connect-src"):
        assert re.search(rf"{directive} [^;]*{re.escape(localstripe_url)}", policy)
    assert f'data-stripe-key="{PUBLISHABLE_KEY}"' in html
    assert f"setup_intent={session.reference}" in html
    assert "TEST MODE" in html
    assert page["Cache-Control"] == "no-store"


def test_the_card_pages_are_not_served_while_another_gateway_is_active(client, settings):
    settings.PAYMENT_GATEWAY = "sandbox"
    assert client.get("/stripe/setup/anything/").status_code == 404


def test_a_forged_card_link_is_refused(client, stripe_gateway):
    page = client.get("/stripe/setup/not-a-signed-link/")
    assert page.status_code == 404
    assert b"This link is not valid" in page.content
