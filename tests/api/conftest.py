"""API test data: a catalog with features, limits and metrics, operator and customer keys, and a
client that sends the key."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from tests.billing.conftest import add_card, new_key
from tests.ops.conftest import captured_logs  # noqa: F401  (a fixture the API tests use)
from tollgate.billing import services
from tollgate.billing.models import Customer
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load
from tollgate.integrations import keys
from tollgate.integrations.customers import customer_create_or_find

API_CATALOG = {
    "products": [
        {
            "code": "app",
            "name": "App",
            "plans": [
                {
                    "code": "starter",
                    "name": "Starter",
                    "features": {"api_access": False, "sso": False},
                    "limits": {"projects": 3, "api_calls_per_month": 100},
                    "prices": [
                        {"amount": 900, "currency": "USD", "interval": "month"},
                        {"amount": 9000, "currency": "USD", "interval": "year"},
                    ],
                },
                {
                    "code": "pro",
                    "name": "Pro",
                    "features": {"api_access": True, "sso": False},
                    "limits": {"projects": 10, "api_calls_per_month": 1000, "seats": -1},
                    "api_rate_limits": {"default": "50/minute", "check": "3/minute"},
                    "prices": [{"amount": 2900, "currency": "USD", "interval": "month"}],
                },
                {
                    "code": "business",
                    "name": "Business",
                    "features": {"api_access": True, "sso": True},
                    "limits": {"projects": 100, "api_calls_per_month": 100000, "seats": -1},
                    "api_rate_limits": {"default": "50/minute", "check": "10/minute"},
                    "prices": [{"amount": 9900, "currency": "USD", "interval": "month"}],
                },
            ],
        }
    ],
    "metrics": [
        {"code": "projects", "name": "Projects", "reset": "level"},
        {"code": "seats", "name": "Seats", "reset": "level"},
        {"code": "api_calls_per_month", "name": "API calls", "unit": "calls"},
    ],
}


@pytest.fixture
def api_catalog(db: Any) -> None:
    catalog_load(document=API_CATALOG)


@pytest.fixture
def plan_price(api_catalog: None) -> Callable[..., Price]:
    def find(plan: str = "pro", interval: str = "month") -> Price:
        return Price.objects.get(plan__code=plan, interval=interval, active=True)

    return find


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Any) -> Callable[[], Any]:
    """``with committed():`` runs what the block's transactions left for after commit (outbox
    deliveries: cache invalidation, emails, webhooks) as a real commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@dataclass
class Api:
    """A test client for the API that sends ``key`` as the bearer token; what a request leaves
    for after commit runs when it returns."""

    client: Client
    key: str
    committed: Callable[[], Any]

    def _headers(self, key: str | None, headers: dict[str, str] | None) -> dict[str, str]:
        sent = {} if key == "" else {"Authorization": f"Bearer {key or self.key}"}
        return {**sent, **(headers or {})}

    def get(self, path: str, *, key: str | None = None, **params: Any) -> Any:
        with self.committed():
            return self.client.get(f"/api/v1{path}", params, headers=self._headers(key, None))

    def post(
        self,
        path: str,
        body: Any,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        with self.committed():
            return self.client.post(
                f"/api/v1{path}",
                json.dumps(body),
                content_type="application/json",
                headers=self._headers(key, headers),
            )

    def patch(self, path: str, body: Any, *, key: str | None = None) -> Any:
        with self.committed():
            return self.client.patch(
                f"/api/v1{path}",
                json.dumps(body),
                content_type="application/json",
                headers=self._headers(key, None),
            )


@pytest.fixture
def redis_round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the commands and pipelines sent to Redis (the cache's and the rate limiter's)."""
    import redis.client

    counted = [0]
    command, pipeline = redis.client.Redis.execute_command, redis.client.Pipeline.execute

    def counting_command(self: Any, *args: Any, **options: Any) -> Any:
        counted[0] += 1
        return command(self, *args, **options)

    def counting_pipeline(self: Any, *args: Any, **options: Any) -> Any:
        counted[0] += 1
        return pipeline(self, *args, **options)

    monkeypatch.setattr(redis.client.Redis, "execute_command", counting_command)
    monkeypatch.setattr(redis.client.Pipeline, "execute", counting_pipeline)
    return counted


@pytest.fixture
def operator_key(db: Any) -> str:
    return keys.api_key_create(name="product backend", scopes=keys.SCOPES).secret


@pytest.fixture
def api(client: Client, operator_key: str, committed: Callable[[], Any]) -> Api:
    return Api(client=client, key=operator_key, committed=committed)


@pytest.fixture
def make_api_customer(db: Any, committed: Callable[[], Any]) -> Callable[..., Customer]:
    def factory(external_id: str = "user_1", email: str | None = None) -> Customer:
        with committed():
            return customer_create_or_find(
                email=email or f"{external_id}@example.org", external_id=external_id
            ).customer

    return factory


@pytest.fixture
def subscribe(plan_price: Callable[..., Price], committed: Callable[[], Any]) -> Callable[..., Any]:
    """Start ``customer`` on ``plan`` with a working card (the sandbox's)."""

    def start(customer: Customer, plan: str = "pro", interval: str = "month") -> Any:
        with committed():
            add_card(customer)
            return services.subscription_start(
                customer=customer, price=plan_price(plan, interval), idempotency_key=new_key()
            )

    return start
