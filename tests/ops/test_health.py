from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from django.core.cache import cache
from django.db import OperationalError, connections
from django.db.backends.sqlite3.base import DatabaseWrapper as SqliteDatabaseWrapper
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from tollgate.ops import collect, health

pytestmark = pytest.mark.django_db

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening on it (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_listener() -> Iterator[socket.socket]:
    """A loopback socket that takes connections and never answers: a hung dependency. Closing it
    resets the pending connections, which ends any check stuck on it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield listener
    finally:
        listener.close()


def redis_cache_at(port: int) -> dict[str, dict[str, str]]:
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
        }
    }


class TestHealthz:
    def test_healthz_answers_200_json(self, client: Client) -> None:
        response = client.get("/healthz")
        assert response.status_code == 200
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"status": "ok"}
        assert "no-cache" in response["Cache-Control"]
        assert client.head("/healthz").status_code == 200

    def test_healthz_answers_200_even_when_dependencies_are_down(
        self, client: Client, closed_port: int
    ) -> None:
        with override_settings(CACHES=redis_cache_at(closed_port)):
            assert client.get("/healthz").status_code == 200


class TestReadyz:
    def test_ready_when_database_and_cache_answer_and_a_worker_checked_in(
        self, client: Client
    ) -> None:
        collect.worker_heartbeat_record()
        response = client.get("/readyz")
        assert response.status_code == 200
        assert response.json() == {
            "status": "ok",
            "checks": {"database": "ok", "cache": "ok", "worker": "ok"},
        }

    @pytest.mark.parametrize("seen_ago", [None, 301.0])
    def test_a_required_worker_not_seen_recently_makes_it_503_naming_the_worker(
        self, client: Client, seen_ago: float | None
    ) -> None:
        if seen_ago is not None:
            cache.set(collect.HEARTBEAT_CACHE_KEY, time.time() - seen_ago, timeout=None)
        with (
            override_settings(WORKER_REQUIRED=True, WORKER_HEARTBEAT_MAX_AGE_SECONDS=300),
            mock.patch.object(health, "_PROCESS_STARTED", time.time() - 3600),
        ):
            response = client.get("/readyz")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["message"] == "Not ready: worker unavailable."
        assert error["details"]["failing"] == ["worker"]
        expected = "WorkerNotSeen" if seen_ago is None else "WorkerStale"
        assert error["details"]["checks"]["worker"] == f"failing: {expected}"

    def test_a_worker_that_is_not_required_is_reported_without_failing_readiness(
        self, client: Client
    ) -> None:
        cache.set(collect.HEARTBEAT_CACHE_KEY, time.time() - 3600, timeout=None)
        with override_settings(WORKER_REQUIRED=False):
            response = client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["checks"]["worker"] == "failing: WorkerStale"

    @pytest.mark.parametrize(
        ("last_seen", "started", "fails"),
        [
            (None, 1000.0, False),  # a fresh process gives the worker time to check in
            (None, 600.0, True),
            (800.0, 0.0, False),
            (699.0, 0.0, True),
        ],
    )
    def test_the_worker_check_allows_the_configured_age(
        self, last_seen: float | None, started: float, fails: bool
    ) -> None:
        def check() -> None:
            health.worker_check(last_seen=last_seen, max_age=300, now=1000.0, started=started)

        if fails:
            with pytest.raises(RuntimeError):
                check()
        else:
            check()

    def test_an_unreachable_redis_cache_makes_it_503_naming_the_cache(
        self, client: Client, closed_port: int
    ) -> None:
        with override_settings(CACHES=redis_cache_at(closed_port)):
            response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {
            "error": {
                "code": "not_ready",
                "message": "Not ready: cache unavailable.",
                "details": {
                    "checks": {
                        "database": "ok",
                        "cache": "failing: ConnectionError",
                        "worker": "failing: ConnectionError",
                    },
                    "failing": ["cache"],
                },
            }
        }

    def test_a_hung_cache_is_reported_within_the_deadline_and_not_checked_twice_at_once(
        self, client: Client, silent_listener: socket.socket
    ) -> None:
        with override_settings(CACHES=redis_cache_at(silent_listener.getsockname()[1])):
            started = time.monotonic()
            first = client.get("/readyz")
            first_took = time.monotonic() - started
            started = time.monotonic()
            second = client.get("/readyz")
            second_took = time.monotonic() - started
        assert first.status_code == 503
        assert first.json()["error"]["details"]["checks"]["cache"] == "failing: timeout"
        assert health.CHECK_TIMEOUT_SECONDS <= first_took < health.CHECK_TIMEOUT_SECONDS + 2
        # The first check is still stuck: the second probe says so at once, without a new thread.
        assert second.status_code == 503
        assert second.json()["error"]["details"]["checks"]["cache"] == (
            "failing: timeout (previous check still running)"
        )
        assert second_took < 1.0
        # Once the dependency lets go, the stuck check ends and readiness comes back by itself.
        silent_listener.close()
        deadline = time.monotonic() + 10
        while (status := client.get("/readyz").status_code) != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status == 200

    @pytest.mark.parametrize(
        "database_url",
        [
            pytest.param("sqlite:///{tmp}/no-such-directory/tollgate.sqlite3", id="sqlite"),
            pytest.param("postgres://tollgate@127.0.0.1:{port}/tollgate", id="postgresql"),
        ],
    )
    def test_an_unreachable_database_makes_it_503_naming_the_database(
        self, tmp_path: Path, closed_port: int, database_url: str
    ) -> None:
        # A fresh Tollgate process configured with a database that cannot be reached (this test
        # process keeps its own test database): the real settings, connection and view.
        env = {
            **os.environ,
            "TOLLGATE_ENV": "test",
            "DATABASE_URL": database_url.format(tmp=tmp_path, port=closed_port),
            "REDIS_URL": "",
            "SENTRY_DSN": "",
        }
        completed = subprocess.run(
            [sys.executable, "-m", "tests.ops.readyz_probe"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        answer = json.loads(completed.stdout.strip().splitlines()[-1])
        assert answer["status"] == 503, completed.stderr[-2000:]
        error = answer["body"]["error"]
        assert error["code"] == "not_ready"
        assert error["message"] == "Not ready: database unavailable."
        assert error["details"]["failing"] == ["database"]
        assert error["details"]["checks"]["cache"] == "ok"
        assert error["details"]["checks"]["database"] in (
            "failing: OperationalError",
            "failing: timeout",
        )
        # Bounded by the work, not by the clock of a loaded machine: the probe ran the checks under
        # the one deadline (a refused connection fails at once; a pool waiting for a connection
        # is cut off by the deadline and reported as a timeout).
        assert answer["deadlines"] == [health.CHECK_TIMEOUT_SECONDS]

    def test_the_database_check_raises_the_drivers_error_for_an_unreachable_database(
        self, tmp_path: Path
    ) -> None:
        def check_unreachable() -> None:
            # A complete settings dict (defaults filled in) for a database in a missing directory.
            settings_dict = connections.configure_settings(
                {
                    "default": {
                        "ENGINE": "django.db.backends.sqlite3",
                        "NAME": str(tmp_path / "missing" / "db.sqlite3"),
                    }
                }
            )["default"]
            connection = SqliteDatabaseWrapper(settings_dict, alias="unreachable")
            try:
                health.database_check(connection)
            finally:
                connection.close()

        with pytest.raises(OperationalError):
            check_unreachable()
        [result] = health.readiness({"database": check_unreachable})
        assert result == health.CheckResult("database", ok=False, detail="OperationalError")
        assert result.state == "failing: OperationalError"


def _samples(client: Client, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = client.get("/metrics").content.decode()
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def _count(samples: dict[tuple[tuple[str, str], ...], float], **labels: str) -> float:
    return samples.get(tuple(sorted(labels.items())), 0.0)


class TestMetrics:
    def test_requests_are_counted_by_route(self, client: Client) -> None:
        before = _samples(client, "tollgate_http_requests_total")
        client.get("/healthz")
        client.get("/healthz")
        client.get("/pricing/")
        client.get("/no/such/page/at-all")
        client.generic("BREW", "/healthz")
        after = _samples(client, "tollgate_http_requests_total")

        def delta(**labels: str) -> float:
            return _count(after, **labels) - _count(before, **labels)

        assert delta(method="GET", route="healthz", status="200") == 2
        assert delta(method="GET", route="web:pricing", status="200") == 1
        assert delta(method="GET", route="unmatched", status="404") == 1
        # Odd methods and paths do not create series of their own.
        assert delta(method="OTHER", route="healthz", status="405") == 1
        assert not any("at-all" in value for key in after for _, value in key)

    def test_latency_is_recorded_by_route(self, client: Client) -> None:
        client.get("/healthz")
        counts = _samples(client, "tollgate_http_request_duration_seconds_count")
        assert _count(counts, route="healthz") >= 1

    def test_metrics_are_open_when_no_token_is_configured(self, client: Client) -> None:
        with override_settings(METRICS_TOKEN=""):
            response = client.get("/metrics")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain")
        assert b"tollgate_http_requests_total" in response.content

    @pytest.mark.parametrize(
        "authorization",
        [None, "", "Bearer", "Bearer wrong-token", "Basic bWV0cmljczp0b2tlbg==", "metrics-token-1"],
    )
    def test_metrics_refuse_requests_without_the_configured_token(
        self, client: Client, authorization: str | None
    ) -> None:
        headers = {} if authorization is None else {"Authorization": authorization}
        with override_settings(METRICS_TOKEN="metrics-token-1"):
            response = client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert response.json()["error"]["code"] == "not_authenticated"
        assert set(response.json()["error"]) == {"code", "message", "details"}
        assert b"tollgate_http" not in response.content

    @pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
    def test_metrics_answer_with_the_configured_token(self, client: Client, scheme: str) -> None:
        with override_settings(METRICS_TOKEN="metrics-token-1"):
            response = client.get(
                "/metrics", headers={"Authorization": f"{scheme} metrics-token-1"}
            )
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain")
        assert b"tollgate_http_requests_total" in response.content
