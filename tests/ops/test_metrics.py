"""The metrics fed by requests, SQL statements, the cache and background tasks, and the gauges the
worker computes from the database."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, override_settings
from huey.contrib.djhuey import task
from huey.exceptions import TaskException
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.billing.conftest import CARD_DECLINES_AFTER_ATTACH, CATALOG, add_card, new_key
from tollgate.accounts.models import User
from tollgate.billing import services
from tollgate.billing.models import Customer
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load
from tollgate.core import clock
from tollgate.ops import cache as ops_cache
from tollgate.ops import collect, instrumentation
from tollgate.ops.middleware import RequestContextMiddleware
from tollgate.ops.tasks import ops_metrics_collect_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening on it (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class TestRequests:
    def test_a_request_is_in_flight_while_it_is_served(self) -> None:
        seen: list[float] = []

        def view(request: HttpRequest) -> HttpResponse:
            seen.append(value("tollgate_http_requests_in_flight"))
            return HttpResponse("ok")

        before = value("tollgate_http_requests_in_flight")
        RequestContextMiddleware(view)(RequestFactory().get("/healthz"))
        assert seen == [before + 1]
        assert value("tollgate_http_requests_in_flight") == before


class TestSlowQueries:
    def test_every_connection_carries_the_slow_query_wrapper_once(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        instrumentation.install_slow_query_wrapper(None, connection)
        assert connection.execute_wrappers.count(instrumentation.slow_query_wrapper) == 1

    def test_statements_over_the_threshold_are_counted_and_faster_ones_are_not(self) -> None:
        def slow_execute(*args: Any) -> str:
            time.sleep(0.02)
            return "done"

        context = {"connection": connection}
        before = value("tollgate_db_slow_queries_total", alias="default")
        with override_settings(SLOW_QUERY_MS=10):
            assert instrumentation.slow_query_wrapper(slow_execute, "SQL", (), False, context)
        with override_settings(SLOW_QUERY_MS=5000):
            instrumentation.slow_query_wrapper(slow_execute, "SQL", (), False, context)
        assert value("tollgate_db_slow_queries_total", alias="default") == before + 1

    @pytest.mark.skipif(connection.vendor != "postgresql", reason="pooling is PostgreSQL's")
    def test_the_connection_pools_statistics_are_exported(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        instrumentation.pool_stats_sample(force=True)
        pool_max = connection.settings_dict["OPTIONS"]["pool"]["max_size"]
        assert value("tollgate_db_pool_max_connections", alias="default") == pool_max
        assert value("tollgate_db_pool_connections", alias="default") >= 1

    def test_a_pool_that_cannot_report_never_fails_the_request(self) -> None:
        pooled = {"default": {**connection.settings_dict, "OPTIONS": {"pool": True}}}
        broken = RuntimeError("the pool is closed")
        with (
            mock.patch.object(instrumentation.connections, "settings", pooled),
            mock.patch.object(instrumentation, "_pool_stats_record", side_effect=broken) as record,
        ):
            instrumentation.pool_stats_sample(force=True)
        assert record.call_count == 1


class TestCache:
    @pytest.mark.parametrize(
        ("key", "name"),
        [
            ("billing:entitlements:12", "entitlements"),
            ("catalog:version", "catalog"),
            ("integrations:usage:3", "usage"),
            ("integrations:api_key:ab", "integrations"),
            ("django.contrib.sessions.cached_db5x", "sessions"),
            ("anything-else", "other"),
        ],
    )
    def test_keys_are_named_by_their_prefix(self, key: str, name: str) -> None:
        assert ops_cache.cache_name(key) == name

    def test_reads_are_counted_as_hits_and_misses_by_cache(self) -> None:
        cache = ops_cache.LocMemCache("counting-test", {})
        hits = value("tollgate_cache_hits_total", cache="entitlements")
        misses = value("tollgate_cache_misses_total", cache="catalog")
        cache.set("billing:entitlements:1", {"a": 1})
        assert cache.get("billing:entitlements:1") == {"a": 1}
        assert cache.get("catalog:version", "fallback") == "fallback"
        assert cache.get_many(["billing:entitlements:1", "catalog:names"]) == {
            "billing:entitlements:1": {"a": 1}
        }
        assert value("tollgate_cache_hits_total", cache="entitlements") == hits + 2
        assert value("tollgate_cache_misses_total", cache="catalog") == misses + 2

    def test_redis_errors_are_counted_and_raised(self, closed_port: int) -> None:
        cache = ops_cache.RedisCache(
            f"redis://127.0.0.1:{closed_port}/0", {"OPTIONS": {"socket_connect_timeout": 1}}
        )
        before = value("tollgate_cache_errors_total", op="get")
        with pytest.raises(Exception, match=r"[Cc]onnect"):
            cache.get("catalog:version")
        assert value("tollgate_cache_errors_total", op="get") == before + 1


@task()
def failing_probe_task() -> None:
    raise RuntimeError("failing on purpose")


class TestTasks:
    def test_completed_and_failed_runs_are_counted_by_task(self) -> None:
        runs = value("tollgate_task_runs_total", task="ops_metrics_collect_task")
        failures = value("tollgate_task_failures_total", task="failing_probe_task")
        ops_metrics_collect_task()
        result = failing_probe_task()  # immediate mode: run now, its error kept in the result
        with pytest.raises(TaskException):
            result.get()
        assert value("tollgate_task_runs_total", task="ops_metrics_collect_task") == runs + 1
        assert value("tollgate_task_failures_total", task="failing_probe_task") == failures + 1

    def test_the_billing_clocks_runs_are_its_heartbeat(self) -> None:
        from tollgate.billing.tasks import billing_clock_task

        billing_clock_task()
        assert value("tollgate_billing_clock_last_success_timestamp_seconds") == pytest.approx(
            time.time(), abs=60
        )

    def test_the_collector_checks_the_worker_in_and_probes_the_queue(self) -> None:
        ops_metrics_collect_task()
        assert collect.worker_last_seen() == pytest.approx(time.time(), abs=60)
        assert value("tollgate_worker_heartbeat_timestamp_seconds") == pytest.approx(
            time.time(), abs=60
        )
        assert 0 <= value("tollgate_task_queue_delay_seconds") < 60


def _customer(email: str) -> Customer:
    user = User.objects.create_user(email=email, password="correct-horse-battery-staple-42")
    return services.customer_get_or_create(user=user)


@pytest.fixture
def priced() -> Callable[[str, str], Price]:
    catalog_load(document=CATALOG)
    return lambda plan, interval: Price.objects.get(plan__code=plan, interval=interval, active=True)


class TestBusinessGauges:
    def test_subscriptions_mrr_and_payments_are_computed_from_the_database(
        self, priced: Callable[[str, str], Price]
    ) -> None:
        for n, (plan, interval) in enumerate(
            [("pro", "month"), ("pro", "month"), ("starter", "year")]
        ):
            customer = _customer(f"payer{n}@example.org")
            add_card(customer)
            services.subscription_start(
                customer=customer,
                price=priced(plan, interval),
                trial=False,
                idempotency_key=new_key(),
            )
        declined = _customer("declined@example.org")
        add_card(declined, CARD_DECLINES_AFTER_ATTACH)
        services.subscription_start(
            customer=declined, price=priced("pro", "month"), trial=False, idempotency_key=new_key()
        )
        collect.metrics_collect()

        assert value("tollgate_billing_subscriptions", status="active", plan="pro") == 2
        assert value("tollgate_billing_subscriptions", status="active", plan="starter") == 1
        assert value("tollgate_billing_subscriptions", status="incomplete", plan="pro") == 1
        assert value("tollgate_billing_subscriptions", status="canceled", plan="free") == 0
        # Two months of 29.00 USD, and a year of 90.00 USD as 7.50 a month: minor units.
        assert value("tollgate_billing_mrr_minor_units", plan="pro", currency="USD") == 5800
        assert value("tollgate_billing_mrr_minor_units", plan="starter", currency="USD") == 750
        assert (
            value("tollgate_billing_payments_last_hour", gateway="sandbox", status="succeeded") == 3
        )
        assert value("tollgate_billing_payments_last_hour", gateway="sandbox", status="failed") == 1
        assert value("tollgate_billing_subscriptions_overdue") == 0
        assert value("tollgate_billing_disputes_open") == 0

    def test_a_yearly_price_is_a_twelfth_a_month(self) -> None:
        assert collect.monthly_amount(amount=9000, interval="year", interval_count=1) == 750
        assert collect.monthly_amount(amount=2900, interval="month", interval_count=3) * 3 == 2900

    def test_a_pending_outbox_message_is_counted_with_its_age(self) -> None:
        from tollgate.core.models import OutboxMessage

        now = clock.now()
        OutboxMessage.objects.create(
            kind="test.noop",
            dedupe_key="metrics-test-1",
            created_at=now - dt.timedelta(minutes=5),
            available_at=now + dt.timedelta(hours=1),
        )
        collect.metrics_collect()
        assert value("tollgate_outbox_pending_messages") >= 1
        assert value("tollgate_outbox_oldest_pending_age_seconds") >= 300
        assert value("tollgate_inbox_pending_events") == 0
        assert value("tollgate_inbox_lag_seconds") == 0


_MULTIPROCESS_SCRAPE = """
import django
django.setup()
from django.core.cache import cache
from django.test import Client
from tollgate.ops import metrics
cache.set(metrics.SNAPSHOT_CACHE_KEY, {"tollgate_outbox_pending_messages": [((), 3)]}, None)
client = Client()
client.get("/healthz")
print(client.get("/metrics").content.decode())
"""


def test_in_multiprocess_mode_metrics_merge_processes_and_read_the_workers_snapshot(
    tmp_path: Path,
) -> None:
    # A fresh interpreter: prometheus_client picks its multiprocess storage when first imported.
    (tmp_path / "metrics").mkdir()
    env = {
        **os.environ,
        "TOLLGATE_ENV": "test",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        # Its own database file and a memory cache: nothing shared with other test runs.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'scrape.sqlite3'}",
        "REDIS_URL": "",
        "DJANGO_SETTINGS_MODULE": "tollgate.config.settings",
        "SENTRY_DSN": "",
    }
    completed = subprocess.run(
        [sys.executable, "-c", _MULTIPROCESS_SCRAPE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(completed.stdout)
        for sample in family.samples
    }
    healthz = (("method", "GET"), ("route", "healthz"), ("status", "200"))
    assert samples[("tollgate_http_requests_total", healthz)] == 1
    assert samples[("tollgate_http_requests_in_flight", ())] == 1  # the scrape itself
    assert samples[("tollgate_outbox_pending_messages", ())] == 3
    assert ("tollgate_task_queue_depth", ()) in samples
    assert any(path.suffix == ".db" for path in (tmp_path / "metrics").iterdir())
