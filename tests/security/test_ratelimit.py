from __future__ import annotations

import re
import uuid

import pytest
import redis
from allauth.account.forms import default_token_generator
from allauth.account.models import EmailAddress
from allauth.account.utils import user_pk_to_url_str
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.conf import settings
from django.core import signing
from django.test import Client, override_settings
from prometheus_client import REGISTRY

from tests.security.conftest import INTERNALS, client_from, login
from tollgate.security import known_device
from tollgate.security.ratelimit import Limiter, email_subject, limiter

pytestmark = pytest.mark.django_db

RATE_LIMIT = re.compile(r'^"(?P<policy>[a-z-]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


def refused_by(response) -> str:
    """The policy named by a 429, after checking the headers and body agree with each other."""
    assert response.status_code == 429, response.content[:300]
    match = RATE_LIMIT.match(response["RateLimit"])
    assert match is not None, response["RateLimit"]
    assert match["r"] == "0"
    assert response["Retry-After"] == match["t"]
    assert int(match["t"]) >= 1
    assert response["RateLimit-Policy"].startswith(f'"{match["policy"]}";q=')
    assert not INTERNALS.search(response.content.decode())
    return match["policy"]


def refusals_counted(policy: str) -> float:
    return REGISTRY.get_sample_value("tollgate_rate_limited_total", {"policy": policy}) or 0.0


# --- Sign-in per address -----------------------------------------------------------------------


def test_sign_in_attempts_from_one_address_are_limited_with_standard_headers(db):
    before = refusals_counted("login-ip")
    client = client_from("198.51.100.7")
    for attempt in range(10):
        response = login(client, f"someone{attempt}@example.org", "wrong-password")
        assert response.status_code == 200  # the form again, with an error
    response = login(client, "someone-else@example.org", "wrong-password")

    assert refused_by(response) == "login-ip"
    assert response["RateLimit-Policy"] == '"login-ip";q=10;w=300'
    assert 0 < int(response["Retry-After"]) <= 300
    assert response["Content-Type"].startswith("text/html")
    assert "Too many sign-in attempts" in response.content.decode()
    assert refusals_counted("login-ip") == before + 1


@override_settings(RATE_LIMIT_OVERRIDES={"login-ip": "2/minute"})
def test_addresses_are_counted_separately(db):
    first, second = client_from("198.51.100.1"), client_from("198.51.100.2")
    for _ in range(2):
        assert login(first, "a@example.org", "wrong").status_code == 200
    assert refused_by(login(first, "b@example.org", "wrong")) == "login-ip"
    assert login(second, "c@example.org", "wrong").status_code == 200


@override_settings(RATE_LIMIT_OVERRIDES={"login-ip": "2/minute"}, TRUSTED_PROXIES=0)
def test_forwarded_for_is_ignored_without_trusted_proxies(db):
    client = client_from("198.51.100.1")
    for i in range(2):
        client.post(
            "/accounts/login/",
            {"login": "a@example.org", "password": "x"},
            HTTP_X_FORWARDED_FOR=f"203.0.113.{i}",
        )
    response = client.post(
        "/accounts/login/",
        {"login": "a@example.org", "password": "x"},
        HTTP_X_FORWARDED_FOR="203.0.113.99",
    )
    assert refused_by(response) == "login-ip"


@override_settings(RATE_LIMIT_OVERRIDES={"login-ip": "2/minute"}, TRUSTED_PROXIES=1)
def test_forwarded_for_from_a_trusted_proxy_identifies_the_client(db):
    proxy = client_from("10.0.0.2")
    for i in range(3):
        response = proxy.post(
            "/accounts/login/",
            {"login": f"a{i}@example.org", "password": "x"},
            HTTP_X_FORWARDED_FOR=f"203.0.113.{i}",
        )
        assert response.status_code == 200
    for _ in range(2):
        proxy.post(
            "/accounts/login/",
            {"login": "z@example.org", "password": "x"},
            HTTP_X_FORWARDED_FOR="203.0.113.50",
        )
    response = proxy.post(
        "/accounts/login/",
        {"login": "z@example.org", "password": "x"},
        HTTP_X_FORWARDED_FOR="203.0.113.50",
    )
    assert refused_by(response) == "login-ip"


def test_get_requests_to_the_sign_in_page_are_not_limited(client):
    for _ in range(15):
        assert client.get("/accounts/login/").status_code == 200


# --- Sign-in per account and the known-device cookie ----------------------------------------------


def fail_logins_from_many_addresses(email: str, times: int) -> None:
    for i in range(times):
        response = login(client_from(f"203.0.113.{i + 1}"), email, "not-the-password")
        assert response.status_code == 200


def test_failed_sign_ins_lock_an_account_for_browsers_it_has_not_used(user):
    fail_logins_from_many_addresses(user.email.upper(), 5)  # case does not make a new bucket

    # Even the right password is refused from an unknown browser, and the answer is the same as
    # for an address with no account behind it (no enumeration).
    response = login(client_from("192.0.2.10"), user.email)
    assert refused_by(response) == "login-account"
    assert "reset your password" in response.content.decode()
    fail_logins_from_many_addresses("nobody@example.org", 5)
    assert refused_by(login(client_from("192.0.2.11"), "nobody@example.org")) == "login-account"


def test_failed_sign_ins_do_not_lock_out_a_browser_that_signed_in_before(user):
    owner = client_from("192.0.2.1")
    assert login(owner, user.email).status_code == 302
    assert known_device.cookie_name() in owner.cookies
    owner.post("/accounts/logout/")

    fail_logins_from_many_addresses(user.email, 5)
    assert refused_by(login(client_from("192.0.2.2"), user.email)) == "login-account"

    # The attacker's failures used the account's bucket, not the owner's browser's bucket: the
    # owner can still mistype, and still sign in.
    assert login(owner, user.email, "typo").status_code == 200
    assert login(owner, user.email).status_code == 302


@override_settings(RATE_LIMIT_OVERRIDES={"login-ip": "100/5minute"})
def test_the_known_device_bucket_limits_failures_from_that_browser(user):
    browser = client_from("192.0.2.1")
    assert login(browser, user.email).status_code == 302
    browser.post("/accounts/logout/")
    for _ in range(10):
        assert login(browser, user.email, "wrong").status_code == 200
    assert refused_by(login(browser, user.email)) == "login-device"
    # Those failures were not counted against the account for other browsers.
    assert login(client_from("192.0.2.2"), user.email).status_code == 302


def test_the_known_browser_is_exempt_for_every_address_of_the_account(user):
    EmailAddress.objects.create(user=user, email="jane.work@example.org", verified=True)
    owner = client_from("192.0.2.1")
    assert login(owner, user.email).status_code == 302
    owner.post("/accounts/logout/")

    fail_logins_from_many_addresses("jane.work@example.org", 5)
    assert refused_by(login(client_from("192.0.2.2"), "jane.work@example.org")) == "login-account"
    assert login(owner, "jane.work@example.org").status_code == 302


def test_a_forged_or_foreign_device_cookie_does_not_exempt_the_client(user):
    fail_logins_from_many_addresses(user.email, 5)
    account = email_subject(user.email)
    forged = {
        "garbage": "not-a-signed-value",
        "other salt": signing.dumps({"d": "x", "a": [account]}, salt="another-purpose"),
        "other account": signing.dumps(
            {"d": "x", "a": [email_subject("someone@example.org")]}, salt=known_device.SALT
        ),
    }
    for label, value in forged.items():
        client = client_from("192.0.2.20")
        client.cookies[known_device.cookie_name()] = value
        assert refused_by(login(client, user.email)) == "login-account", label


def test_the_device_cookie_is_signed_http_only_and_lax_and_holds_no_address(client, user):
    response = login(client, user.email)
    cookie = response.cookies[known_device.cookie_name()]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["max-age"] == 365 * 24 * 60 * 60
    assert not cookie["secure"]
    content = signing.loads(cookie.value, salt=known_device.SALT)
    assert content["a"] == [email_subject(user.email)]
    assert "@" not in str(content)


@override_settings(SECURE_COOKIES=True)
def test_the_device_cookie_is_secure_and_host_prefixed_when_cookies_are_secure(user):
    client = Client(REMOTE_ADDR="192.0.2.30")
    response = login(client, user.email)
    cookie = response.cookies["__Host-tollgate_device"]
    assert cookie["secure"] is True
    assert cookie["path"] == "/"
    assert not cookie["domain"]


def test_a_password_reset_lifts_an_account_lock(user):
    fail_logins_from_many_addresses(user.email, 5)
    assert refused_by(login(client_from("192.0.2.40"), user.email)) == "login-account"

    owner = client_from("192.0.2.41")
    key = default_token_generator.make_token(user)
    start = owner.get(f"/accounts/password/reset/key/{user_pk_to_url_str(user)}-{key}/")
    assert start.status_code == 302
    new_password = "another-correct-horse-battery-99"
    done = owner.post(start["Location"], {"password1": new_password, "password2": new_password})
    assert done.status_code == 302, done.content[:400]

    assert login(client_from("192.0.2.42"), user.email, new_password).status_code == 302


# --- Two-factor codes ------------------------------------------------------------------------------


@pytest.fixture
def mfa_user(user):
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return user


def test_wrong_two_factor_codes_are_limited_per_account_whatever_the_address(mfa_user):
    first = client_from("192.0.2.50")
    assert login(first, mfa_user.email)["Location"] == "/accounts/2fa/authenticate/"
    for _ in range(5):
        response = first.post("/accounts/2fa/authenticate/", {"code": "000000x"})
        assert response.status_code == 200
    assert refused_by(first.post("/accounts/2fa/authenticate/", {"code": "1"})) == "mfa-user"

    # A new session from another address, with the right password, is still refused codes.
    second = client_from("192.0.2.51")
    assert login(second, mfa_user.email)["Location"] == "/accounts/2fa/authenticate/"
    assert refused_by(second.post("/accounts/2fa/authenticate/", {"code": "1"})) == "mfa-user"


@override_settings(RATE_LIMIT_OVERRIDES={"mfa-ip": "3/minute"})
def test_two_factor_code_submissions_are_limited_per_address(make_user):
    client = client_from("192.0.2.60")
    for index in range(2):
        person = make_user(email=f"mfa{index}@example.org")
        TOTP.activate(person, generate_totp_secret())
        login(client, person.email)
        client.post("/accounts/2fa/authenticate/", {"code": "000000x"})
        client.post("/accounts/2fa/authenticate/", {"code": "000000x"})
        client.post("/accounts/logout/")
    assert refused_by(client.post("/accounts/2fa/authenticate/", {"code": "1"})) == "mfa-ip"


# --- Password reset, sign-up and signed-in endpoints --------------------------------------------


def test_reset_emails_to_one_address_are_limited_and_keys_hold_no_address(user):
    for i in range(3):
        response = client_from(f"192.0.2.{70 + i}").post(
            "/accounts/password/reset/", {"email": user.email}
        )
        assert response.status_code == 302
    response = client_from("192.0.2.80").post(
        "/accounts/password/reset/", {"email": f"  {user.email.upper()} "}
    )
    assert refused_by(response) == "password-reset-email"
    assert "check your inbox" in response.content.decode()

    keys = stored_keys()
    assert any(key.startswith("password-reset-email/") for key in keys)
    assert not any("example.org" in key or "jane" in key for key in keys)


@override_settings(RATE_LIMIT_OVERRIDES={"password-reset-ip": "2/minute"})
def test_reset_requests_from_one_address_are_limited(db):
    client = client_from("192.0.2.90")
    for i in range(2):
        client.post("/accounts/password/reset/", {"email": f"p{i}@example.org"})
    response = client.post("/accounts/password/reset/", {"email": "p9@example.org"})
    assert refused_by(response) == "password-reset-ip"


@override_settings(RATE_LIMIT_OVERRIDES={"signup-ip": "2/minute"})
def test_sign_ups_from_one_address_are_limited(db):
    client = client_from("192.0.2.100")
    for i in range(2):
        client.post("/accounts/signup/", {"email": f"new{i}@example.org", "password1": "x"})
    response = client.post("/accounts/signup/", {"email": "new9@example.org", "password1": "x"})
    assert refused_by(response) == "signup-ip"


@override_settings(RATE_LIMIT_OVERRIDES={"password-change-user": "2/minute"})
def test_password_changes_are_limited_per_account(signed_in_client):
    data = {"oldpassword": "wrong", "password1": "x", "password2": "x"}
    for _ in range(2):
        signed_in_client.post("/accounts/password/change/", data)
    response = signed_in_client.post("/accounts/password/change/", data)
    assert refused_by(response) == "password-change-user"


# --- The API -------------------------------------------------------------------------------------


def test_api_responses_carry_rate_limit_headers(client):
    response = client.get("/api/v1/status")
    assert response.status_code == 200
    assert response["RateLimit-Policy"] == '"api-ip";q=300;w=60'
    match = RATE_LIMIT.match(response["RateLimit"])
    assert match is not None
    assert match["policy"] == "api-ip"
    assert match["r"] == "299"
    assert 0 <= int(match["t"]) <= 60


def test_pages_do_not_carry_api_rate_limit_headers(client):
    assert "RateLimit" not in client.get("/")


@override_settings(RATE_LIMIT_OVERRIDES={"api-ip": "2/minute"})
def test_the_api_refuses_in_its_error_shape_once_the_quota_is_used(client):
    before = refusals_counted("api-ip")
    assert client.get("/api/v1/status")["RateLimit"].startswith('"api-ip";r=1;')
    assert client.get("/api/v1/plans")["RateLimit"].startswith('"api-ip";r=0;')
    response = client.get("/api/v1/status")

    assert refused_by(response) == "api-ip"
    assert response["RateLimit-Policy"] == '"api-ip";q=2;w=60'
    retry_after = int(response["Retry-After"])
    assert response.json() == {
        "error": {
            "code": "rate_limited",
            "message": response.json()["error"]["message"],
            "details": {"retry_after": retry_after, "policy": "api-ip"},
        }
    }
    assert "Try again in" in response.json()["error"]["message"]
    assert refusals_counted("api-ip") == before + 1


@override_settings(RATE_LIMIT_OVERRIDES={"api-ip": "1/minute"}, RATELIMIT_ENABLED=False)
def test_nothing_is_limited_when_rate_limiting_is_off(client, user):
    for _ in range(3):
        response = client.get("/api/v1/status")
        assert response.status_code == 200
        assert "RateLimit" not in response
    fail_logins_from_many_addresses(user.email, 7)
    assert login(client_from("192.0.2.110"), user.email).status_code == 302


@override_settings(RATELIMIT_STORAGE_URL="redis://127.0.0.1:1/0")
def test_an_unreachable_storage_lets_requests_through(client, user):
    response = client.get("/api/v1/status")
    assert response.status_code == 200
    assert "RateLimit" not in response
    assert login(client, user.email).status_code == 302


# --- Storage -------------------------------------------------------------------------------------


def stored_keys() -> list[str]:
    storage = limiter().storage
    if settings.RATELIMIT_STORAGE_URL.startswith("memory://"):
        return list(storage.events)  # type: ignore[attr-defined]
    prefix = f"{settings.RATELIMIT_KEY_PREFIX}:"
    client = storage.storage  # type: ignore[attr-defined]
    return [key.decode().removeprefix(prefix) for key in client.scan_iter(f"{prefix}*")]


@pytest.mark.redis
def test_limits_in_redis_survive_a_restart_and_reset_touches_only_tollgate_keys(client):
    url = settings.REDIS_URL
    prefix = f"tollgate-rl-test-{uuid.uuid4().hex[:8]}"
    before_restart = Limiter(storage_url=url, key_prefix=prefix)
    for _ in range(10):
        assert before_restart.hit("login-ip", "ip:203.0.113.5").allowed
    assert not before_restart.hit("login-ip", "ip:203.0.113.5").allowed

    after_restart = Limiter(storage_url=url, key_prefix=prefix)
    decision = after_restart.peek("login-ip", "ip:203.0.113.5")
    assert not decision.allowed
    assert decision.remaining == 0

    unrelated = redis.Redis.from_url(url)
    unrelated.set(f"not-{prefix}", "keep me", ex=60)
    try:
        after_restart.reset()
        assert after_restart.peek("login-ip", "ip:203.0.113.5").allowed
        assert unrelated.get(f"not-{prefix}") == b"keep me"
    finally:
        unrelated.delete(f"not-{prefix}")


@pytest.mark.redis
def test_web_processes_share_counts_through_redis(user):
    with override_settings(RATELIMIT_STORAGE_URL=settings.REDIS_URL):
        # Another web process (its own limiter) counted failures for this account...
        other_process = Limiter(
            storage_url=settings.REDIS_URL, key_prefix=settings.RATELIMIT_KEY_PREFIX
        )
        for _ in range(5):
            other_process.hit("login-account", email_subject(user.email))
        # ...so this process refuses the account to an unknown browser.
        assert refused_by(login(client_from("192.0.2.120"), user.email)) == "login-account"
        other_process.reset()
