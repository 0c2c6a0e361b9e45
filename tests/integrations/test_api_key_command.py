"""``api_key_create``: an operator key for provisioning scripts, printed alone on standard output."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import CommandError, call_command

from tollgate.audit.models import AuditEvent
from tollgate.core import clock
from tollgate.integrations.keys import api_key_authenticate
from tollgate.integrations.models import ApiKey

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("api_key_create", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_key_alone_is_printed_and_it_works():
    out, err = run(
        "--name",
        "provisioning",
        "--scopes",
        "entitlements:read, usage:write",
        "--expires-in-days",
        "90",
        "--rate-limit",
        "check=6000/minute",
        "--rate-limit",
        "usage=100/second",
    )
    assert out.count("\n") == 1
    secret = out.strip()
    identity = api_key_authenticate(presented=secret)
    key = ApiKey.objects.get()
    assert identity.key_id == key.public_id
    assert (key.name, key.kind, key.scopes) == (
        "provisioning",
        "operator",
        ["entitlements:read", "usage:write"],
    )
    assert key.rate_limits == {"check": "6000/minute", "usage": "100/second"}
    assert key.expires_at is not None
    assert key.expires_at - clock.now() > dt.timedelta(days=89)
    assert key.public_id in err
    assert "shown only this once" in err
    assert secret not in err
    for event in AuditEvent.objects.filter(action="api_key.created"):
        assert secret not in str(event.details)


def test_a_key_without_expiry_works_until_revoked():
    out, err = run("--name", "forever", "--scopes", "billing:read")
    assert api_key_authenticate(presented=out.strip())
    assert ApiKey.objects.get().expires_at is None
    assert "until revoked" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scopes", "billing:read,root"], "Unknown scope(s): root"),
        (["--scopes", " , "], "Choose one or more scopes"),
        (["--scopes", "billing:read", "--rate-limit", "check"], "CLASS=RATE"),
        (
            ["--scopes", "billing:read", "--rate-limit", "nightly=5/minute"],
            "Rate limits are set per",
        ),
        (["--scopes", "billing:read", "--rate-limit", "check=lots"], "number per period"),
        (["--scopes", "billing:read", "--expires-in-days", "0"], "1 or more"),
    ],
)
def test_bad_values_are_refused_with_a_clear_error_and_issue_nothing(args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run("--name", "bad", *args)
    assert not ApiKey.objects.exists()


def test_an_empty_name_is_refused():
    with pytest.raises(CommandError, match="name"):
        run("--name", "  ", "--scopes", "billing:read")
    assert not ApiKey.objects.exists()
