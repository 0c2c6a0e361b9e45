"""A new customer's account journey in a real Chromium: sign up, verify, sign in, turn on TOTP,
sign in with TOTP, reset the password from the mailed link. No console error or CSP violation."""

from __future__ import annotations

import re
import time

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.core import mail

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EMAIL = "walker@example.org"
PASSWORD = "lantern-orbit-pebble-9120"
NEW_PASSWORD = "meadow-cipher-quartz-4471"


def mailed_link(fragment: str) -> str:
    for message in reversed(mail.outbox):
        if EMAIL in message.to:
            for link in re.findall(r"https?://[^\s<>\"']+", str(message.body)):
                if fragment in link:
                    return link
    raise AssertionError(f"no mailed link containing {fragment}")


def totp(secret: str) -> str:
    """The code of the current 30-second step, taken at a step's start when the current one has
    less than 10 seconds left: the server accepts the current step's code only (no tolerance),
    and on a busy machine the form can take seconds to reach it."""
    left = 30 - time.time() % 30
    if left < 10:
        time.sleep(left + 0.1)
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def sign_in(page, base: str, password: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_login", EMAIL)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Sign In").click()


def sign_out(page) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/$"))


def test_sign_up_verify_totp_and_password_reset(live_server, page):
    page, problems = page
    base = live_server.url

    page.goto(f"{base}/")
    page.get_by_role("link", name="Sign up").click()
    page.fill("#id_email", EMAIL)
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.get_by_role("button", name="Sign Up").click()
    page.wait_for_url("**/accounts/confirm-email/")

    page.goto(mailed_link("/accounts/confirm-email/"))
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url("**/accounts/login/")

    sign_in(page, base, PASSWORD)
    page.wait_for_url(f"{base}/")
    assert page.get_by_role("link", name="Account", exact=True).is_visible()

    page.goto(f"{base}/accounts/2fa/totp/activate/")
    page.wait_for_url("**/accounts/reauthenticate/**")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url("**/accounts/2fa/totp/activate/")
    secret = page.input_value("#authenticator_secret")
    page.fill("#id_code", totp(secret))
    page.get_by_role("button", name="Activate").click()
    page.wait_for_url(re.compile(r".*/accounts/2fa/.*"))
    assert Authenticator.objects.filter(user__email=EMAIL, type=Authenticator.Type.TOTP).exists()

    sign_out(page)
    sign_in(page, base, PASSWORD)
    page.wait_for_url("**/accounts/2fa/authenticate/")
    page.fill("#id_code", totp(secret))
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{base}/")
    sign_out(page)

    page.goto(f"{base}/accounts/password/reset/")
    page.fill("#id_email", EMAIL)
    page.get_by_role("button", name="Reset My Password").click()
    page.wait_for_url("**/accounts/password/reset/done/")
    page.goto(mailed_link("/accounts/password/reset/key/"))
    page.fill("#id_password1", NEW_PASSWORD)
    page.fill("#id_password2", NEW_PASSWORD)
    page.get_by_role("button", name="Change Password").click()
    page.wait_for_url("**/accounts/password/reset/key/done/")

    # The new password signs in, and two-factor authentication is still asked for.
    sign_in(page, base, NEW_PASSWORD)
    page.wait_for_url("**/accounts/2fa/authenticate/")
    codes = Authenticator.objects.get(user__email=EMAIL, type=Authenticator.Type.RECOVERY_CODES)
    page.fill("#id_code", RecoveryCodes(codes).get_unused_codes()[0])
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{base}/")

    assert problems.items == []
