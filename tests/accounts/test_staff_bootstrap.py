"""The first staff user of `make run`: its generated password is printed where nobody can miss it,
and a lost one is replaced (and audited) with `make staff-password`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def bootstrap(capsys, *args: str) -> str:
    call_command("staff_bootstrap", "--email", "boss@example.org", *args)
    return capsys.readouterr().out


def password_in(out: str) -> str:
    return out.split("password: ")[1].split()[0]


def test_a_new_staff_users_password_is_printed_in_a_box(capsys):
    out = bootstrap(capsys)
    lines = out.splitlines()
    borders = [index for index, line in enumerate(lines) if set(line) == {"+", "-"}]
    assert len(borders) == 2
    framed = lines[borders[0] : borders[1] + 1]
    assert any(f"password: {password_in(out)}" in line for line in framed)
    assert any("boss@example.org" in line for line in framed)
    assert any(f"{settings.SITE_URL}/accounts/login/" in line for line in framed)
    assert len({len(line) for line in framed}) == 1  # a straight box, whatever the password
    assert User.objects.get(email="boss@example.org").check_password(password_in(out))


def test_an_existing_staff_user_is_left_alone_and_told_how_to_reset(capsys):
    first = password_in(bootstrap(capsys))
    out = bootstrap(capsys)
    assert "already exists" in out
    assert "make staff-password" in out
    assert "password: " not in out
    assert User.objects.get(email="boss@example.org").check_password(first)


def test_reset_password_sets_prints_and_audits_a_new_one(capsys):
    first = password_in(bootstrap(capsys))
    out = bootstrap(capsys, "--reset-password")
    second = password_in(out)
    assert second != first
    staff = User.objects.get(email="boss@example.org")
    assert staff.check_password(second)
    assert not staff.check_password(first)
    event = AuditEvent.objects.get(action="account.staff_password_reset")
    assert event.target_id == staff.public_id
    assert second not in str(event.details)


def test_reset_password_creates_the_staff_user_when_there_is_none(capsys):
    out = bootstrap(capsys, "--reset-password")
    assert User.objects.get(email="boss@example.org").check_password(password_in(out))


def test_reset_password_refuses_an_account_that_is_not_staff(make_user):
    customer = make_user("boss@example.org")
    with pytest.raises(CommandError, match="not a staff user"):
        call_command("staff_bootstrap", "--email", "boss@example.org", "--reset-password")
    customer.refresh_from_db()
    assert not customer.is_staff


def test_make_staff_password_resets_the_staff_users_password():
    result = subprocess.run(
        ["make", "-n", "staff-password", "STAFF_EMAIL=boss@example.org"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "staff_bootstrap --email boss@example.org --reset-password" in result.stdout
