from __future__ import annotations

import pytest
from django.contrib.auth.hashers import Argon2PasswordHasher, check_password, make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import override_settings

from tollgate.accounts.models import User


def errors_for(password: str, user: User | None = None) -> list[str]:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        return [error.code for error in exc.error_list]
    return []


def test_passwords_are_hashed_with_argon2_in_production_configuration(settings):
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.Argon2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]
    encoded = make_password("a-sufficiently-long-passphrase")
    assert encoded.startswith("argon2$argon2id$")
    assert check_password("a-sufficiently-long-passphrase", encoded)


def test_long_passwords_are_not_truncated():
    long_password = "x" * 200 + "A1"
    encoded = Argon2PasswordHasher().encode(long_password, Argon2PasswordHasher().salt())
    assert Argon2PasswordHasher().verify(long_password, encoded)
    assert not Argon2PasswordHasher().verify("x" * 200 + "A2", encoded)
    assert not Argon2PasswordHasher().verify("x" * 200, encoded)


@pytest.mark.django_db
def test_twelve_characters_is_the_minimum_and_sixty_four_are_allowed():
    assert "password_too_short" in errors_for("Kq8#zL2m!w9")
    assert errors_for("Kq8#zL2m!w9v") == []
    assert errors_for("Kq8#zL2m!w9v" * 5 + "abcd") == []  # 64 characters


@pytest.mark.django_db
def test_an_overlong_password_is_refused_with_a_message_not_truncated():
    assert "password_too_long" in errors_for("Kq8#zL2m!w9v" * 90)


@pytest.mark.django_db
@pytest.mark.parametrize("password", ["password1234", "123456789012", "qwertyuiop123"])
def test_common_and_numeric_passwords_are_refused(password):
    assert errors_for(password)


@pytest.mark.django_db
def test_passwords_built_on_the_site_name_or_email_are_refused():
    user = User(email="margaret.hamilton@apollo-guidance.test")
    assert "password_context_word" in errors_for("Tollgate2026!", user)
    assert "password_context_word" in errors_for("hamilton!2026#", user)
    assert errors_for("unrelated-quiet-lantern-88", user) == []


@pytest.mark.django_db
@override_settings(
    TOLLGATE_BRAND={
        "name": "Acme Cloud",
        "support_email": "s@acme.test",
        "primary_color": "#000",
        "logo_url": "",
    }
)
def test_the_operators_site_name_is_a_context_word():
    assert "password_context_word" in errors_for("acmecloud2026!")


@pytest.mark.django_db
def test_signup_form_shows_why_a_password_is_refused(client):
    response = client.post(
        "/accounts/signup/",
        {"email": "ann@example.org", "password1": "tollgate1234", "password2": "tollgate1234"},
    )
    assert response.status_code == 200
    assert "first things an attacker tries" in response.content.decode()
    assert not User.objects.filter(email="ann@example.org").exists()
