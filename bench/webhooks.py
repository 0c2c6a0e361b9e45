"""How many verified webhook events per second does Tollgate accept into its inbox?

The production profile (``TOLLGATE_ENV=production``: PostgreSQL, Redis, HTTPS behind one trusted
proxy) is served by ``manage.py serve --no-worker`` (granian, the production server settings) on a
loopback port, with the Stripe gateway configured (test keys, explicitly allowed). A fixed number of
distinct Stripe-shaped events, each signed the way Stripe signs them (``Stripe-Signature: t=..,
v1=..``), is prepared first; then client processes POST them to ``/webhooks/stripe/`` over
keep-alive connections (127.0.0.1 only, a time cap stops them) and the server verifies, stores and
queues each one. Nothing processes the queue: this measures acceptance, what a gateway waits for.

Result line (``webhook_vs_healthz``: the events' rate over the rate of ``GET /healthz`` measured by
the same clients just before and just after them):

    webhook_events_per_s=1234.5 webhook_vs_healthz=0.5 healthz_rps=.. events=6000 accepted=6000 stored=6000 errors=0 p50_ms=.. ...

``stored`` is counted in the database afterwards: every accepted event is stored exactly once.
The database (created here and dropped afterwards, its name must contain "bench") comes from
DATABASE_URL (default postgres://postgres@127.0.0.1:5432/tollgate_bench_webhooks); Redis from
BENCH_REDIS_URL (default redis://127.0.0.1:6379/13), where only the keys this run wrote are
deleted afterwards. Every process started here is stopped by its process group, also when the run
fails or is interrupted.

Usage: python bench/webhooks.py [--events 6000] [--clients 2] [--threads 8] [--workers 2]
       [--time-cap 60]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _procs
import entitlements as ent
from _procs import (
    HOST,
    ROOT,
    database_drop,
    database_recreate,
    free_port,
    stop,
    stopped_on_exit,
    wait_until_ready,
)

from tollgate.billing.gateways.signatures import signature_header_build

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tollgate_bench_webhooks"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
PATH = "/webhooks/stripe/"


def environment(
    database_url: str, redis_url: str, data_dir: Path, key_prefix: str
) -> dict[str, str]:
    webhook_secret = "whsec_" + secrets.token_hex(16)
    env = {
        **os.environ,
        "TOLLGATE_ENV": "production",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": HOST,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "TOLLGATE_DATA_DIR": str(data_dir),
        "TOLLGATE_SITE_URL": f"https://{HOST}",
        "TOLLGATE_TRUSTED_PROXIES": "1",  # the load generator plays the TLS-terminating proxy
        "TOLLGATE_METRICS_TOKEN": secrets.token_urlsafe(32),
        "TOLLGATE_RATELIMIT_KEY_PREFIX": key_prefix,
        "TOLLGATE_GATEWAY": "stripe",
        "TOLLGATE_STRIPE_SECRET_KEY": "sk_test_" + secrets.token_hex(12),
        "TOLLGATE_STRIPE_PUBLISHABLE_KEY": "pk_test_" + secrets.token_hex(12),
        "TOLLGATE_STRIPE_WEBHOOK_SECRETS": webhook_secret,
        "TOLLGATE_STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION": "true",
        "LOG_LEVEL": "INFO",  # as in production: every request and event is logged
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in ("SENTRY_DSN", "PROMETHEUS_MULTIPROC_DIR", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    return env


def signed_events(count: int, secret: str) -> list[tuple[bytes, str]]:
    """``count`` distinct events as Stripe sends them: (JSON body, Stripe-Signature header)."""
    now = int(time.time())
    events = []
    for number in range(count):
        body = json.dumps(
            {
                "id": f"evt_bench{number:08d}{secrets.token_hex(4)}",
                "object": "event",
                "api_version": "2024-06-20",
                "created": now,
                "livemode": False,
                "type": "payment_intent.processing",
                "data": {
                    "object": {
                        "id": f"pi_bench{number:08d}",
                        "object": "payment_intent",
                        "amount": 2900,
                        "currency": "usd",
                        "status": "processing",
                        "metadata": {"idempotency_key": f"inv_bench{number}-attempt-1"},
                    }
                },
            }
        ).encode()
        events.append((body, signature_header_build(payload=body, secrets=[secret], timestamp=now)))
    return events


def client(
    port: int, events: list[tuple[bytes, str]], threads: int, time_cap: float, out: Any
) -> None:
    """One client process: ``threads`` keep-alive connections sending its share of the events."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    statuses: list[dict[int, int]] = [{} for _ in range(threads)]
    deadline = time.perf_counter() + time_cap

    def send(index: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            for body, signature in events[index::threads]:
                if time.perf_counter() > deadline:
                    return
                sent = time.perf_counter()
                try:
                    connection.request(
                        "POST",
                        PATH,
                        body=body,
                        headers={
                            "Host": HOST,
                            "Content-Type": "application/json",
                            "Stripe-Signature": signature,
                            "X-Forwarded-Proto": "https",
                            "X-Forwarded-For": "203.0.113.7",
                        },
                    )
                    response = connection.getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException):
                    status = 0
                    connection.close()
                    connection = http.client.HTTPConnection(HOST, port, timeout=10)
                latencies[index].append((time.perf_counter() - sent) * 1000)
                statuses[index][status] = statuses[index].get(status, 0) + 1
        finally:
            connection.close()

    workers = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(time_cap + 15)
    merged: dict[int, int] = {}
    for chunk in statuses:
        for status, count in chunk.items():
            merged[status] = merged.get(status, 0) + count
    out.put({"latencies": [v for chunk in latencies for v in chunk], "statuses": merged})


def stored_events(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as connection:
        row = connection.execute(
            "SELECT count(*) FROM billing_inboundevent WHERE gateway = 'stripe'"
        ).fetchone()
    return int(row[0]) if row else 0


def redis_cleanup(redis_url: str, key_prefix: str) -> None:
    """Delete the keys this run wrote: the task queue, its rate-limit counters and cache entries."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for pattern in ("huey.*tollgate*", f"{key_prefix}*", "tollgate:*"):
            for key in client.scan_iter(match=pattern, count=500):
                client.delete(key)
    finally:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--clients", type=int, default=2, help="load-generating processes")
    parser.add_argument("--threads", type=int, default=8, help="connections per client process")
    parser.add_argument("--workers", type=int, default=2, help="web server worker processes")
    parser.add_argument("--time-cap", type=float, default=60.0)
    args = parser.parse_args()
    if not (1 <= args.events <= 100_000 and 1 <= args.clients <= 8 and 0 < args.time_cap <= 300):
        parser.error("need 1 <= --events <= 100000, 1 <= --clients <= 8, 0 < --time-cap <= 300")
    database_url = _procs.bench_database_url(DEFAULT_DATABASE_URL, "webhook")
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    key_prefix = f"bench-webhooks-{secrets.token_hex(4)}"
    data_dir = Path(tempfile.mkdtemp(prefix="tollgate-bench-webhooks-"))
    env = environment(database_url, redis_url, data_dir, key_prefix)
    events = signed_events(args.events, env["TOLLGATE_STRIPE_WEBHOOK_SECRETS"])
    try:
        database_recreate(database_url)
        subprocess.run(
            [sys.executable, "-m", "tollgate", "migrate", "--no-input"],
            cwd=ROOT, env=env, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        with stopped_on_exit():
            port = free_port()
            log_path = data_dir / "server.log"
            with log_path.open("wb") as log:
                server = _procs.started(
                    subprocess.Popen(
                        [sys.executable, "-m", "tollgate", "serve", "--no-worker",
                         "--host", HOST, "--port", str(port), "--workers", str(args.workers)],
                        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )  # fmt: skip
            wait_until_ready(port, server, headers={"X-Forwarded-Proto": "https"})
            # Warm up every worker's connections with events that are not counted.
            warmup = signed_events(200, env["TOLLGATE_STRIPE_WEBHOOK_SECRETS"])
            queue: Any = multiprocessing.get_context("fork").Queue()
            client(port, warmup, args.threads, 30, queue)
            queue.get(timeout=5)
            shares = [events[i :: args.clients] for i in range(args.clients)]
            processes = [
                multiprocessing.get_context("fork").Process(
                    target=client, args=(port, share, args.threads, args.time_cap, queue)
                )
                for share in shares
            ]
            healthz = ent.Job("GET", "/healthz", {"Host": HOST, "X-Forwarded-Proto": "https"})
            healthz_options = {"clients": args.clients, "threads": args.threads}
            before = ent.load(
                server, port, healthz, **healthz_options, seconds=5, max_requests=50_000
            )
            started = time.perf_counter()
            for process in processes:
                process.start()
            results = [queue.get(timeout=args.time_cap + 60) for _ in processes]
            elapsed = time.perf_counter() - started
            for process in processes:
                process.join(10)
            after = ent.load(
                server, port, healthz, **healthz_options, seconds=5, max_requests=50_000
            )
            stop(server)
            server_log = log_path.read_text(errors="replace")[-2000:]
        latencies = sorted(v for result in results for v in result["latencies"])
        statuses: dict[int, int] = {}
        for result in results:
            for status, count in result["statuses"].items():
                statuses[status] = statuses.get(status, 0) + count
        accepted = statuses.get(200, 0)
        errors = sum(count for status, count in statuses.items() if status != 200)
        stored = stored_events(database_url) - len(warmup)
        # /healthz just before and just after, the same clients: the machine in the same state.
        healthz_rps = (before.rps + after.rps) / 2
        ok = (
            accepted == args.events
            and stored == accepted
            and errors == 0
            and before.errors == after.errors == 0
        )
        print(
            f"webhook_events_per_s={accepted / elapsed:.1f}"
            f" webhook_vs_healthz={accepted / elapsed / healthz_rps if healthz_rps else 0:.2f}"
            f" healthz_rps={healthz_rps:.1f} events={args.events}"
            f" accepted={accepted} stored={stored} errors={errors}"
            f" p50_ms={statistics.median(latencies):.2f}"
            f" p99_ms={latencies[int(len(latencies) * 0.99) - 1]:.2f}"
            f" seconds={elapsed:.2f} workers={args.workers} clients={args.clients}"
            f" connections={args.clients * args.threads} status={'ok' if ok else 'failed'}",
            flush=True,
        )
        if not ok:
            print(f"statuses: {statuses}\nserver log (tail):\n{server_log}", file=sys.stderr)
        return 0 if ok else 1
    finally:
        redis_cleanup(redis_url, key_prefix)
        database_drop(database_url)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
