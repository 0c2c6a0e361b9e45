"""Faults under load, on the local cluster with a PostgreSQL and a Redis of the test's own:
restarting PostgreSQL gives 503s while it is down and nothing else, Tollgate recovers without a
restart, and no write is lost or made twice; restarting Redis loses nothing either."""

from __future__ import annotations

import http.client
import http.server
import json
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.deploy.cluster import REPO_ROOT, WAIT_SECONDS, running_cluster
from tollgate.billing.gateways.signatures import signature_header_build

WEBHOOK_SECRET = secrets.token_urlsafe(40)
CUSTOMERS = 24  # writes of each kind, spread over the outage
EVENTS = 24


@dataclass
class Receiver:
    """An HTTP endpoint on loopback that keeps every outgoing webhook Tollgate delivers."""

    deliveries: list[dict[str, Any]] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def __enter__(self) -> Receiver:
        deliveries = self.deliveries

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                deliveries.append({"id": self.headers.get("webhook-id"), "body": json.loads(body)})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Client:
    """Sends requests through nginx the way a careful caller does: the same idempotency key (or
    event) again until it is accepted, and keeps every status it saw, with when."""

    port: int
    api_key: str
    seen: list[tuple[float, str, int | str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> int | str:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            outcome: int | str = response.status
        except (OSError, http.client.HTTPException) as error:
            outcome = type(error).__name__
        finally:
            connection.close()
        with self.lock:
            self.seen.append((time.monotonic(), path, outcome))
        return outcome

    def until_accepted(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            outcome = self.send(method, path, body, headers)
            if isinstance(outcome, int) and outcome < 300:
                return outcome
            time.sleep(0.2)
        raise AssertionError(f"{method} {path} was never accepted")

    def customer_create(self, number: int) -> int:
        body = json.dumps({"email": f"fault{number}@example.com", "external_id": f"ext-{number}"})
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Content-Type": "application/json",
            "Idempotency-Key": f"fault-customer-{number}",
        }
        return self.until_accepted("POST", "/api/v1/customers", body.encode(), headers)

    def event_send(self, number: int) -> int:
        payload = json.dumps(
            {
                "id": f"evt_fault_{number}",
                "type": "test.fault_injection",
                "created": int(time.time()),
                "data": {"object": {"number": number}},
            }
        ).encode()
        signature = signature_header_build(
            payload=payload, secrets=[WEBHOOK_SECRET], timestamp=int(time.time())
        )
        headers = {"Content-Type": "application/json", "Sandbox-Signature": signature}
        return self.until_accepted("POST", "/webhooks/sandbox/", payload, headers)


def _manage(cluster: Any, *arguments: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", "tollgate", *arguments],
        cwd=REPO_ROOT,
        env=cluster.environment("manage"),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return completed.stdout.strip()


@pytest.fixture
def cluster_with_receiver(tmp_path: Path) -> Iterator[tuple[Any, Any, Any, Receiver, Client]]:
    environ = {
        "TOLLGATE_SANDBOX_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "TOLLGATE_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
        "TOLLGATE_IDEMPOTENCY_LEASE_SECONDS": "30",
    }
    with Receiver() as receiver, running_cluster(tmp_path, **environ) as (cluster, pg, redis):
        key = _manage(
            cluster,
            "api_key_create",
            "--name",
            "faults",
            "--scopes",
            "customers:write,webhooks:manage",
        ).splitlines()[-1]
        client = Client(port=cluster.nginx_port, api_key=key)
        body = json.dumps({"url": receiver.url, "event_types": ["customer.created"]}).encode()
        headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Idempotency-Key": "fault-endpoint",
        }
        assert client.until_accepted("POST", "/api/v1/webhook-endpoints", body, headers) == 201
        yield cluster, pg, redis, receiver, client


SIGN_IN = (
    "from django.test import Client; from tollgate.accounts.models import User;"
    " user = User.objects.create_user(email='session@example.com', password=None);"
    " client = Client(); client.force_login(user); print(client.cookies['sessionid'].value)"
)


def _account_page(port: int, session: str) -> int:
    """The status of the signed-in account page with ``session``'s cookie (302: signed out)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", "/account/", headers={"Cookie": f"sessionid={session}"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _writes(client: Client, pause: float) -> list[threading.Thread]:
    def customers() -> None:
        for number in range(CUSTOMERS):
            client.customer_create(number)
            time.sleep(pause)

    def events() -> None:
        for number in range(EVENTS):
            client.event_send(number)
            time.sleep(pause)

    threads = [threading.Thread(target=customers), threading.Thread(target=events)]
    for thread in threads:
        thread.start()
    return threads


def _wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def _rows(database_url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(query).fetchall()


def _check_nothing_lost_or_doubled(pg: Any, receiver: Receiver) -> None:
    url = pg.url("tollgate")
    customers = _rows(url, "SELECT external_id, count(*) FROM billing_customer GROUP BY 1")
    assert sorted(customers) == sorted((f"ext-{n}", 1) for n in range(CUSTOMERS))
    events = _rows(
        url,
        "SELECT event_id, count(*) FROM billing_inboundevent WHERE gateway = 'sandbox' GROUP BY 1",
    )
    assert sorted(events) == sorted((f"evt_fault_{n}", 1) for n in range(EVENTS))
    # Every customer's customer.created webhook arrives (at least once, one webhook id each).
    _wait_for(
        lambda: len({delivery["id"] for delivery in receiver.deliveries}) >= CUSTOMERS,
        "every customer.created webhook delivered",
    )
    delivered = Counter(delivery["body"]["data"]["external_id"] for delivery in receiver.deliveries)
    assert set(delivered) == {f"ext-{n}" for n in range(CUSTOMERS)}
    ids = {delivery["id"] for delivery in receiver.deliveries}
    assert len(ids) == CUSTOMERS  # a redelivery keeps its id, so the receiver can drop it


def test_a_postgresql_restart_under_load_gives_503s_only_while_it_is_down(cluster_with_receiver):
    cluster, pg, _redis, receiver, client = cluster_with_receiver
    threads = _writes(client, pause=0.3)
    _wait_for(lambda: len(client.seen) >= 10, "writes flowing")
    down_at = time.monotonic()
    pg.stop()
    time.sleep(3)  # an outage the writers run into
    pg.start()
    up_at = time.monotonic()
    for thread in threads:
        thread.join(timeout=WAIT_SECONDS * 2)
    # Recovered without restarting Tollgate: the same processes answer.
    assert all(cluster.alive().values()), cluster.alive()
    before = [o for at, _, o in client.seen if at < down_at]
    during = [o for at, _, o in client.seen if down_at <= at <= up_at]
    after = [o for at, _, o in client.seen if at > up_at + 5]
    assert set(before) <= {200, 201}, Counter(before)
    assert set(during) <= {200, 201, 503}, Counter(during)
    assert 503 in during
    assert set(after) <= {200, 201}, Counter(after)
    _check_nothing_lost_or_doubled(pg, receiver)


def test_a_redis_restart_under_load_loses_nothing(cluster_with_receiver):
    cluster, pg, redis, receiver, client = cluster_with_receiver
    # A signed-in session (made by Django's own login, in the configured session store).
    session = _manage(cluster, "shell", "-c", SIGN_IN).splitlines()[-1]
    assert _account_page(cluster.nginx_port, session) == 200
    assert _account_page(cluster.nginx_port, "not-a-session") == 302
    threads = _writes(client, pause=0.3)
    _wait_for(lambda: len(client.seen) >= 10, "writes flowing")
    down_at = time.monotonic()
    redis.stop()
    time.sleep(3)
    redis.start()
    up_at = time.monotonic()
    for thread in threads:
        thread.join(timeout=WAIT_SECONDS * 2)
    assert all(cluster.alive().values()), cluster.alive()
    before = [o for at, _, o in client.seen if at < down_at]
    during = [o for at, _, o in client.seen if down_at <= at <= up_at]
    after = [o for at, _, o in client.seen if at > up_at + 5]
    assert set(before) <= {200, 201}, Counter(before)
    # Rate limits fail open (no 429); what needs the cache (API keys) answers 503 meanwhile.
    assert set(during) <= {200, 201, 503}, Counter(during)
    assert set(after) <= {200, 201}, Counter(after)
    # The session is still signed in: the database kept it while Redis started empty.
    assert _account_page(cluster.nginx_port, session) == 200
    # Queued tasks lived in the Redis that was restarted without persistence: the worker's
    # sweeps find their work in the database again (outbox, inbox), so nothing is lost.
    _check_nothing_lost_or_doubled(pg, receiver)


RENEWALS = 30


def _renewals(cluster: Any, *arguments: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", "tests.deploy.renewals", *arguments],
        cwd=REPO_ROOT,
        env=cluster.environment("manage"),
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return completed.stdout.strip()


def _renewal_report(cluster: Any) -> dict[str, Any]:
    return json.loads(_renewals(cluster, "report").splitlines()[-1])


def _settled(report: dict[str, Any]) -> bool:
    return report["renewed"] == RENEWALS and set(report["payments_by_status"]) == {"succeeded"}


def test_a_postgresql_restart_while_the_workers_renew_charges_each_subscription_once(tmp_path):
    with running_cluster(tmp_path, workers=0) as (cluster, pg, _redis):
        _renewals(cluster, "setup", str(RENEWALS))
        first = _renewal_report(cluster)
        assert first["succeeded_payments"] == RENEWALS  # each one's first period, paid
        assert first["renewed"] == 0
        cluster.workers = 2
        for index in range(2):
            cluster.start_worker(index)
        # The workers' billing clock runs every minute: cut the database off as soon as it has
        # begun renewing (or, if it finishes first, between two runs).
        url = pg.url("tollgate")
        _wait_for(
            lambda: _rows(url, "SELECT count(*) FROM billing_paymentattempt")[0][0] > RENEWALS,
            "the billing clock starts renewing",
        )
        pg.stop()
        time.sleep(3)
        pg.start()
        # Charges the gateway took while their outcome could not be written stay pending until
        # the clock asks the gateway about them (after a minute): wait until nothing is pending.
        deadline = time.monotonic() + WAIT_SECONDS * 3
        while not _settled(report := _renewal_report(cluster)):
            assert time.monotonic() < deadline, report
            time.sleep(2)
        assert all(cluster.alive().values()), cluster.alive()
        # Every subscription renewed once, charged once, at the gateway once; the books balance.
        assert report["subscriptions"] == RENEWALS
        assert report["succeeded_payments"] == 2 * RENEWALS, report
        assert report["invoices_paid_twice"] == []
        assert report["gateway_charges"] == 2 * RENEWALS, report
        assert report["ledger_ok"], report["ledger_problems"]
