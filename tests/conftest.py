from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import django.test.client
import pytest
from allauth.account.models import EmailAddress
from django.conf import settings
from django.core import mail
from django.core.cache import cache
from django.test import Client, override_settings

from tollgate.accounts.models import User
from tollgate.config.handlers import LeanChain, lean_route

STRONG_PASSWORD = "correct-horse-battery-staple-42"


class _LeanClientHandler(LeanChain, django.test.client.ClientHandler):
    pass


class RoutedClientHandler(django.test.client.ClientHandler):
    """The test client's handler, routed as the served application routes (tollgate.config.handlers):
    tests of the API, health and webhooks go through the lean middleware chain they get in
    production, pages through the whole one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lean = _LeanClientHandler(*args, **kwargs)

    def __call__(self, environ: dict[str, Any]) -> Any:
        if lean_route(environ["PATH_INFO"]):
            return self.lean(environ)
        return super().__call__(environ)


django.test.client.ClientHandler = RoutedClientHandler  # type: ignore[misc]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("REDIS_URL"):
        return
    skip = pytest.mark.skip(reason="needs Redis: set REDIS_URL (CI runs this on real Redis)")
    for item in items:
        if "redis" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _own_redis_namespace() -> Iterator[None]:
    """Keys of this test run (cache, rate limits) get a prefix of their own, so runs sharing one
    Redis, and other data in it, never see or clear each other's keys."""
    run = f"test{os.getpid()}"
    caches = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"tollgate-{run}"}}
    with override_settings(CACHES=caches, RATELIMIT_KEY_PREFIX=f"tollgate-rl-{run}"):
        yield


def clear_cache() -> None:
    """Empty Tollgate's cache without touching other data in a shared Redis (no FLUSHDB)."""
    if not os.environ.get("REDIS_URL"):
        cache.clear()
        return
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    keys = list(client.scan_iter(match=f"{cache.key_prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _clean_cache_and_limits() -> None:
    clear_cache()
    from tollgate.security import ratelimit

    ratelimit.reset_all()


@pytest.fixture
def make_user(db: Any) -> Callable[..., User]:
    """A signed-up account with a verified email (the state after the sign-up flow)."""

    def factory(
        email: str = "jane@example.org", password: str = STRONG_PASSWORD, **extra: Any
    ) -> User:
        user = User.objects.create_user(email=email, password=password, **extra)
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
        return user

    return factory


@pytest.fixture
def user(make_user: Callable[..., User]) -> User:
    return make_user()


@pytest.fixture
def signed_in_client(client: Client, user: User) -> Client:
    response = client.post(
        "/accounts/login/", {"login": user.email, "password": STRONG_PASSWORD}, follow=False
    )
    assert response.status_code == 302, response.content[:500]
    return client


def links_in(message: Any) -> list[str]:
    return re.findall(r"https?://[^\s<>\"']+", str(message.body))


def last_mail_to(address: str) -> Any:
    for message in reversed(mail.outbox):
        if address in message.to:
            return message
    raise AssertionError(f"no mail to {address}: {[m.to for m in mail.outbox]}")
