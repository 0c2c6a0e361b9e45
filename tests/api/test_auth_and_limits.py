"""API keys on the API: every way a key can be wrong gets the same 401, a missing scope 403,
and each key (a customer's keys together) is counted against its own rates."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings

from tests.billing.conftest import new_key
from tollgate.billing import services
from tollgate.core import clock
from tollgate.integrations import keys
from tollgate.integrations.models import ApiKey

pytestmark = pytest.mark.django_db

UNAUTHENTICATED = {
    "code": "not_authenticated",
    "message": keys.ApiKeyInvalid.default_message,
    "details": {},
}


def _refused_the_same_way(response) -> None:
    assert response.status_code == 401
    assert response.json() == {"error": UNAUTHENTICATED}


def test_a_missing_key_is_refused_in_the_house_error_format(api):
    _refused_the_same_way(api.get("/customers", key=""))


@pytest.mark.parametrize(
    "presented",
    [
        "nonsense",
        "tg_test_short",
        "tg_test_" + "A" * 52,  # well formed, unknown
        "Basic dXNlcjpwYXNz",
    ],
)
def test_malformed_and_unknown_keys_get_the_same_answer(api, presented):
    _refused_the_same_way(api.get("/customers", key=presented))


def test_a_key_with_a_wrong_secret_is_refused(api, operator_key):
    tampered = operator_key[:-1] + ("a" if operator_key[-1] != "a" else "b")
    _refused_the_same_way(api.get("/customers", key=tampered))


def test_a_revoked_key_is_refused(api, committed):
    assert api.get("/customers").status_code == 200
    with committed():
        keys.api_key_revoke(key=ApiKey.objects.get())
    _refused_the_same_way(api.get("/customers"))


def test_an_expired_key_is_refused(api):
    issued = keys.api_key_create(
        name="short", scopes=["billing:read"], expires_at=clock.now() + dt.timedelta(hours=1)
    )
    assert api.get("/customers", key=issued.secret).status_code == 200
    with clock.frozen(clock.now() + dt.timedelta(hours=2)):
        _refused_the_same_way(api.get("/customers", key=issued.secret))


def test_a_key_of_the_other_mode_is_refused(api, operator_key):
    live = operator_key.replace("tg_test_", "tg_live_")
    _refused_the_same_way(api.get("/customers", key=live))
    with override_settings(API_KEY_MODE="live"):
        _refused_the_same_way(api.get("/customers"))


def test_a_key_without_the_scope_gets_403(api):
    reader = keys.api_key_create(name="reader", scopes=["billing:read"]).secret
    response = api.post("/customers", {"email": "a@example.org"}, key=reader)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_missing"
    assert response.json()["error"]["details"] == {"scope": "customers:write"}


def test_a_rotated_key_works_with_its_replacement_until_the_overlap_ends(
    api, operator_key, committed
):
    assert api.get("/customers").status_code == 200  # cached as it was
    with committed():
        new = keys.api_key_rotate(key=ApiKey.objects.get(), overlap=dt.timedelta(hours=1)).secret
    assert api.get("/customers", key=operator_key).status_code == 200
    assert api.get("/customers", key=new).status_code == 200
    with clock.frozen(clock.now() + dt.timedelta(hours=1, minutes=1)):
        _refused_the_same_way(api.get("/customers", key=operator_key))
        assert api.get("/customers", key=new).status_code == 200


def test_last_use_is_recorded_without_a_write_per_request(api):
    api.get("/customers")
    key = ApiKey.objects.get()
    assert key.last_used_at is not None
    api.get("/customers")  # warm: the key is cached and was touched moments ago
    first = key.last_used_at
    key.refresh_from_db()
    assert key.last_used_at == first


def test_every_answer_carries_the_rate_limit_headers(api):
    response = api.get("/customers")
    assert response["RateLimit-Policy"] == '"api-read";q=1200;w=60'
    assert response["RateLimit"].startswith('"api-read";r=1199;')


def test_an_operator_key_over_its_own_rate_gets_429_with_retry_after(api):
    limited = keys.api_key_create(
        name="limited", scopes=["billing:read"], rate_limits={"read": "2/minute"}
    ).secret
    assert api.get("/customers", key=limited).status_code == 200
    assert api.get("/customers", key=limited).status_code == 200
    refused = api.get("/customers", key=limited)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["RateLimit"].startswith('"api-read";r=0;')
    # Other keys and other operation classes have their own allowance.
    assert api.get("/customers").status_code == 200


def test_a_check_over_the_keys_rate_gets_429_and_is_not_answered(api, make_api_customer, subscribe):
    subscribe(make_api_customer("u1"), "pro")
    limited = keys.api_key_create(
        name="limited", scopes=["entitlements:read"], rate_limits={"check": "2/minute"}
    ).secret
    body = {"customer": "u1", "feature": "projects"}
    for remaining in (1, 0):
        answered = api.post("/entitlements/check", body, key=limited)
        assert answered.json()["remaining"] == 10
        assert answered["RateLimit"].startswith(f'"api-check";r={remaining};')
    refused = api.post("/entitlements/check", body, key=limited)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert api.post("/entitlements/check", body).status_code == 200  # another key's allowance


@pytest.mark.redis
def test_a_check_is_let_through_when_its_rate_limit_count_gets_no_answer(
    api, make_api_customer, subscribe, monkeypatch, captured_logs
):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from tollgate.ops.cache import RedisCache

    subscribe(make_api_customer("u1"), "pro")
    body = {"customer": "u1", "feature": "projects"}
    assert api.post("/entitlements/check", body).status_code == 200

    def unreachable(*args, **kwargs):
        raise RedisConnectionError("down")

    monkeypatch.setattr(RedisCache, "get_many_and_eval", unreachable)
    answered = api.post("/entitlements/check", body)
    assert answered.status_code == 200
    assert answered.json()["remaining"] == 10
    assert "RateLimit" not in answered
    assert captured_logs.events("ratelimit.storage_unavailable")


def test_invalid_keys_are_counted_per_address(api, settings):
    settings.RATE_LIMIT_OVERRIDES = {"api-ip": "3/minute"}
    for _ in range(3):
        assert api.get("/customers", key="tg_test_" + "B" * 52).status_code == 401
    assert api.get("/customers", key="tg_test_" + "B" * 52).status_code == 429
    assert api.get("/customers").status_code == 200  # a valid key is not held back


def test_customer_keys_get_their_plans_rates_and_an_upgrade_raises_them(
    api, make_api_customer, subscribe, plan_price, committed
):
    customer = make_api_customer()
    subscription = subscribe(customer, "pro")
    own = keys.customer_api_key_create(
        customer=customer, name="mine", scopes=["entitlements:read"]
    ).secret
    body = {"customer": customer.public_id, "feature": "projects"}
    for _ in range(3):
        assert api.post("/entitlements/check", body, key=own).status_code == 200
    assert api.post("/entitlements/check", body, key=own).status_code == 429
    with committed():
        services.subscription_change_price(
            subscription=subscription, price=plan_price("business"), idempotency_key=new_key()
        )
    assert api.post("/entitlements/check", body, key=own).status_code == 200
