"""The audit trail of an account records what happened: a new account's first verified address is a
verification, not an email change, and an actual change names both addresses (masked)."""

from __future__ import annotations

import re

import pytest

from tests.accounts.test_sessions import sign_in
from tests.accounts.test_signup_and_login import sign_up
from tests.conftest import STRONG_PASSWORD, last_mail_to, links_in
from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def confirm(client, address: str, capture) -> None:
    """Follow the verification link of the last email to ``address``."""
    link = next(
        link for link in links_in(last_mail_to(address)) if "/accounts/confirm-email/" in link
    )
    with capture(execute=True):
        assert client.post(re.sub(r"^https?://[^/]+", "", link)).status_code == 302


def test_a_new_accounts_verification_is_no_email_change(client, django_capture_on_commit_callbacks):
    sign_up(client, django_capture_on_commit_callbacks)
    confirm(client, "new@example.org", django_capture_on_commit_callbacks)
    user = User.objects.get(email="new@example.org")
    actions = list(
        AuditEvent.objects.filter(target_id=user.public_id)
        .order_by("pk")
        .values_list("action", flat=True)
    )
    assert actions == ["account.signed_up", "account.email_verified"]


def test_an_email_change_records_both_addresses_masked(user, django_capture_on_commit_callbacks):
    client = sign_in(user)
    client.post("/accounts/reauthenticate/", {"password": STRONG_PASSWORD})
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/accounts/email/", {"action_add": "", "email": "june@example.net"})
    confirm(client, "june@example.net", django_capture_on_commit_callbacks)
    change = AuditEvent.objects.get(action="account.email_changed")
    assert change.details == {"from": "j***@example.org", "to": "j***@example.net"}
