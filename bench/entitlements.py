"""How many entitlement checks per second does Tollgate answer, next to its cheapest request?

The production profile (``TOLLGATE_ENV=production``: PostgreSQL, Redis, HTTPS behind one trusted
proxy, rate limits on) is served by ``manage.py serve --no-worker`` (granian, the production server
settings) on a loopback port. The database gets the demo catalog, an operator key for the check
(``api_key_create --scopes entitlements:read --rate-limit check=1000000/minute``: every check is
counted by the limiter, as in production, and none is refused) and a customer, created through the
API, on a trial of the Pro plan with 3 projects reported through the API, so that the check reads
a limit and its use. After a warm-up, client processes send requests over keep-alive connections
(127.0.0.1 only; a round stops after a time cap or a number of requests) in interleaved rounds:
``GET /healthz`` (no I/O), ``POST /api/v1/entitlements/check`` for ``projects``, and again. Every
check must answer 200 with the body of a correct answer (allowed, 22 remaining); any other answer
is counted as an error and the run fails.

Result lines (the medians over the rounds, with their range):

    path=/healthz rps=1850.0 min=.. max=.. p50_ms=.. p99_ms=.. server_cpu_ms=.. errors=0 ...
    entitlement_checks_per_s=900.0 min=.. max=.. p50_ms=.. p99_ms=.. server_cpu_ms=..
        check_vs_healthz=0.49 ratio_min=.. ratio_max=.. errors=0 rounds=5 ... status=ok
    check_sql_queries=0 check_redis_round_trips=6 checks=20

``check_vs_healthz`` is each round's checks per second over the /healthz rate of the round just
before it (neighbouring rounds see the machine in the same state). ``server_cpu_ms`` is the CPU
time the server's processes used per request (from /proc), steadier than the rates on a shared
machine; the clients, PostgreSQL and Redis are not in it. The last line is measured in this
process after the load, with the same settings and database, through Django's test client: SQL
statements and Redis round trips (cache and rate limiter) per warm check.

The database (created here and dropped afterwards, its name must contain "bench") comes from
DATABASE_URL (default postgres://postgres@127.0.0.1:5432/tollgate_bench_entitlements); Redis from
BENCH_REDIS_URL (default redis://127.0.0.1:6379/12), where the keys a production-profile run writes
are deleted before and after. The payment gateway is the offline sandbox (explicitly allowed in
production): nothing here is charged. The server is stopped by its process group and the client
processes by their ids, also when the run fails or is interrupted.

Usage: python bench/entitlements.py [--rounds 5] [--seconds 5] [--requests 50000] [--clients 2]
       [--threads 8] [--workers 2] [--warmup 2]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import _procs
from _procs import (
    HOST,
    LOOPBACK,
    PROXY_HEADERS,
    ROOT,
    database_drop,
    database_recreate,
    redis_cleanup,
    stop,
    stopped_on_exit,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tollgate_bench_entitlements"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
HEALTHZ_PATH = "/healthz"
CHECK_PATH = "/api/v1/entitlements/check"
# High enough never to refuse a check here, while the limiter still counts every one.
CHECK_RATE = "1000000/minute"
PLAN = "pro"
FEATURE = "projects"
PROJECTS_USED = 3
IN_PROCESS_CHECKS = 20
READY_TIMEOUT_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Job:
    """The request a round sends, and the body every answer must have (None: any body)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None
    expected: bytes | None = None


@dataclass(frozen=True)
class Round:
    path: str
    answered: int  # 200 with the expected body
    errors: int  # another status, another body, or no answer
    seconds: float
    latencies_ms: list[float]
    server_cpu_seconds: float  # the server's processes, user and system

    @property
    def rps(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    @property
    def server_cpu_ms(self) -> float:
        sent = self.answered + self.errors
        return self.server_cpu_seconds * 1000 / sent if sent else float("nan")

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# --- Load ------------------------------------------------------------------------------------------
def client(
    port: int,
    job: Job,
    threads: int,
    seconds: float,
    max_requests: int,
    ready: Any,
    go: Any,
    out: Any,
) -> None:
    """One client process: ``threads`` keep-alive connections sending ``job`` from the moment ``go``
    is set until ``seconds`` have passed or ``max_requests`` were sent."""
    tickets = itertools.count()
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    ready.put(os.getpid())
    if not go.wait(READY_TIMEOUT_SECONDS):
        out.put(None)
        return
    started = time.monotonic()
    deadline = started + seconds

    def send(index: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_SECONDS)
        try:
            while next(tickets) < max_requests and time.monotonic() < deadline:
                sent = time.monotonic()
                try:
                    connection.request(job.method, job.path, body=job.body, headers=job.headers)
                    response = connection.getresponse()
                    body = response.read()
                    ok = response.status == 200 and job.expected in (None, body)
                except (OSError, http.client.HTTPException):
                    ok = False
                    connection.close()
                    connection = http.client.HTTPConnection(
                        HOST, port, timeout=REQUEST_TIMEOUT_SECONDS
                    )
                latencies[index].append((time.monotonic() - sent) * 1000)
                if not ok:
                    errors[index] += 1
        finally:
            connection.close()

    workers = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + REQUEST_TIMEOUT_SECONDS + 5)
    out.put(
        {
            "started": started,
            "finished": time.monotonic(),
            "latencies": [value for chunk in latencies for value in chunk],
            "errors": sum(errors),
        }
    )


def load(
    server: subprocess.Popen[bytes],
    port: int,
    job: Job,
    *,
    clients: int,
    threads: int,
    seconds: float,
    max_requests: int,
) -> Round:
    """Run ``clients`` client processes together, released at once, and merge what they saw, with
    the CPU time the server used meanwhile. The clients are spawned, not forked: this process holds
    Django's connections and threads."""
    context = multiprocessing.get_context("spawn")
    ready, out, go = context.Queue(), context.Queue(), context.Event()
    share = max(1, max_requests // clients)
    processes = [
        context.Process(
            target=client,
            args=(port, job, threads, seconds, share, ready, go, out),
            daemon=True,
        )
        for _ in range(clients)
    ]
    try:
        for process in processes:
            process.start()
        for _ in processes:
            ready.get(timeout=READY_TIMEOUT_SECONDS)
        cpu_before = _procs.family_cpu_seconds(server.pid)
        go.set()
        results = [out.get(timeout=seconds + 2 * REQUEST_TIMEOUT_SECONDS + 30) for _ in processes]
        cpu = _procs.family_cpu_seconds(server.pid) - cpu_before
    finally:
        for process in processes:
            process.join(REQUEST_TIMEOUT_SECONDS)
            if process.is_alive():
                process.terminate()  # by its id: only the clients started here
                process.join(REQUEST_TIMEOUT_SECONDS)
    if any(result is None for result in results):
        raise RuntimeError("a client process was not released")
    latencies = [value for result in results for value in result["latencies"]]
    errors = sum(result["errors"] for result in results)
    seconds_taken = max(r["finished"] for r in results) - min(r["started"] for r in results)
    return Round(job.path, len(latencies) - errors, errors, seconds_taken, latencies, cpu)


# --- Set-up ----------------------------------------------------------------------------------------
def tollgate(argv: list[str], env: dict[str, str]) -> str:
    """``python -m tollgate <argv>`` with the benchmark's environment; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "tollgate", *argv],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"tollgate {argv[0]} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def api_headers(key: str) -> dict[str, str]:
    return {
        "Host": HOST,
        **PROXY_HEADERS,
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
    }


def api_post(port: int, key: str, path: str, payload: dict[str, Any]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_SECONDS)
    try:
        connection.request("POST", path, body=json.dumps(payload), headers=api_headers(key))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def api_expect(port: int, key: str, path: str, payload: dict[str, Any], status: int) -> bytes:
    got, body = api_post(port, key, path, payload)
    if got != status:
        raise RuntimeError(f"POST {path} answered {got}, not {status}: {body[:500]!r}")
    return body


def django_setup(env: dict[str, str]) -> None:
    """Django in this process, with the server's settings and database."""
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "tollgate.config.settings"
    os.environ["LOG_LEVEL"] = "WARNING"  # this process's own requests are not part of the figures
    import django

    django.setup()


def django_close() -> None:
    if "django.db" not in sys.modules:
        return
    from django.db import connections

    connections.close_all()
    for connection in connections.all(initialized_only=True):
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()


def trial_start(external_id: str) -> int:
    """Start the customer on a trial of the plan (trialing grants the plan's access; no card is
    needed); returns the plan's limit for the checked feature."""
    from tollgate.billing.models import Customer
    from tollgate.billing.services import subscription_start
    from tollgate.billing.states import SubscriptionStatus
    from tollgate.catalog.models import Price

    customer = Customer.objects.get(external_id=external_id)
    price = Price.objects.select_related("plan").get(plan__code=PLAN, interval="month", active=True)
    subscription = subscription_start(
        customer=customer,
        price=price,
        trial=True,
        idempotency_key=f"bench-{secrets.token_hex(8)}",
    )
    if subscription.status != SubscriptionStatus.TRIALING:
        raise RuntimeError(f"the subscription is {subscription.status}, not trialing")
    return int(price.plan.limits[FEATURE])


# --- In-process counts -----------------------------------------------------------------------------
@contextmanager
def redis_round_trips() -> Iterator[list[int]]:
    """Count the commands and pipelines sent to Redis (the cache's and the limiter's) meanwhile."""
    import redis.client

    counted = [0]
    command, pipeline = redis.client.Redis.execute_command, redis.client.Pipeline.execute

    def counting_command(self: Any, *args: Any, **options: Any) -> Any:
        counted[0] += 1
        return command(self, *args, **options)

    def counting_pipeline(self: Any, *args: Any, **options: Any) -> Any:
        counted[0] += 1
        return pipeline(self, *args, **options)

    redis.client.Redis.execute_command = counting_command  # type: ignore[method-assign]
    redis.client.Pipeline.execute = counting_pipeline  # type: ignore[method-assign]
    try:
        yield counted
    finally:
        redis.client.Redis.execute_command = command  # type: ignore[method-assign]
        redis.client.Pipeline.execute = pipeline  # type: ignore[method-assign]


def check_costs(key: str, body: bytes, expected: bytes) -> tuple[float, float, list[str]]:
    """SQL statements and Redis round trips per warm check, through Django's test client in this
    process, and the statements themselves."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    headers = {k: v for k, v in api_headers(key).items() if k not in ("Host", "Content-Type")}
    web = Client(HTTP_HOST=HOST)

    def post() -> None:
        response = web.post(CHECK_PATH, body, content_type="application/json", headers=headers)
        if response.status_code != 200 or json.loads(response.content) != json.loads(expected):
            raise RuntimeError(f"in-process check: {response.status_code} {response.content!r}")

    for _ in range(3):  # this process's first check notes the key's use and opens its connections
        post()
    with CaptureQueriesContext(connection) as queries, redis_round_trips() as trips:
        for _ in range(IN_PROCESS_CHECKS):
            post()
    statements = [query["sql"] for query in queries.captured_queries]
    return len(statements) / IN_PROCESS_CHECKS, trips[0] / IN_PROCESS_CHECKS, statements


# --- Report ----------------------------------------------------------------------------------------
def spread(values: list[float], digits: int = 1) -> str:
    return (
        f"{statistics.median(values):.{digits}f} min={min(values):.{digits}f}"
        f" max={max(values):.{digits}f}"
    )


def round_line(number: int, rounds: int, result: Round) -> str:
    return (
        f"round {number}/{rounds} {result.path}: {result.rps:.1f} answers/s,"
        f" p50 {result.percentile(50):.2f} ms, p99 {result.percentile(99):.2f} ms,"
        f" server CPU {result.server_cpu_ms:.2f} ms per request,"
        f" {result.answered} answered, {result.errors} errors"
    )


def options(description: str = "", *, rounds: int = 5) -> argparse.Namespace:
    """The options of a benchmark of rounds of keep-alive load (this one's, and bench/pages.py's)."""
    parser = argparse.ArgumentParser(description=description or __doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=rounds, help="rounds of each path (3 or more)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="time cap of each round")
    parser.add_argument("--requests", type=int, default=50_000, help="request cap of each round")
    parser.add_argument("--clients", type=int, default=2, help="load-generating processes")
    parser.add_argument("--threads", type=int, default=8, help="connections per client process")
    parser.add_argument("--workers", type=int, default=2, help="web server worker processes")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per path")
    args = parser.parse_args()
    if not (
        3 <= args.rounds <= 20
        and 0 < args.seconds <= 60
        and 0 < args.warmup <= 30
        and 1 <= args.requests <= 1_000_000
        and 1 <= args.clients <= 8
        and 1 <= args.threads <= 64
        and 1 <= args.workers <= 8
    ):
        parser.error(
            "need 3 <= --rounds <= 20, 0 < --seconds <= 60, 0 < --warmup <= 30, "
            "1 <= --requests <= 1000000, 1 <= --clients <= 8, 1 <= --threads <= 64, "
            "1 <= --workers <= 8"
        )
    return args


def main() -> int:
    args = options()
    database_url = _procs.bench_database_url(DEFAULT_DATABASE_URL, "entitlement check")
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    if (urlsplit(redis_url).hostname or "") not in LOOPBACK:
        raise SystemExit("the entitlement check benchmark only uses a Redis on this machine")
    key_prefix = f"bench-entitlements-{secrets.token_hex(4)}"
    data_dir = Path(tempfile.mkdtemp(prefix="tollgate-bench-entitlements-"))
    (data_dir / "static").mkdir()  # where collectstatic would write; nothing here serves a file
    env = _procs.production_environment(
        database_url=database_url, redis_url=redis_url, data_dir=data_dir, key_prefix=key_prefix
    ) | {"TOLLGATE_GATEWAY": "sandbox", "TOLLGATE_ALLOW_SANDBOX_IN_PRODUCTION": "true"}
    load_options = {"clients": args.clients, "threads": args.threads}
    try:
        with stopped_on_exit():
            redis_cleanup(redis_url, key_prefix)  # cached entries an interrupted run left behind
            database_recreate(database_url)
            tollgate(["migrate", "--no-input"], env)
            tollgate(["catalog_load", "demo"], env)
            check_key = tollgate(
                ["api_key_create", "--name", "bench", "--scopes", "entitlements:read",
                 "--rate-limit", f"check={CHECK_RATE}"],
                env,
            ).strip()  # fmt: skip
            setup_key = tollgate(
                ["api_key_create", "--name", "bench set-up", "--scopes",
                 "customers:write,usage:write"],
                env,
            ).strip()  # fmt: skip
            server, port = _procs.serve_start(env, data_dir / "server.log", workers=args.workers)

            # The customer, its trial and its usage, before anything is cached: nothing runs the
            # outbox here, so a cached copy would not be dropped after a change.
            external_id = f"bench-{secrets.token_hex(6)}"
            api_expect(
                port, setup_key, "/api/v1/customers",
                {"email": f"{external_id}@example.com", "external_id": external_id,
                 "name": "Bench"},
                201,
            )  # fmt: skip
            django_setup(env)
            limit = trial_start(external_id)
            api_expect(
                port, setup_key, "/api/v1/usage",
                {"events": [{"id": f"{external_id}-projects", "customer": external_id,
                             "metric": FEATURE, "quantity": PROJECTS_USED,
                             "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]},
                200,
            )  # fmt: skip

            payload = {"customer": external_id, "feature": FEATURE, "quantity": 1}
            body = json.dumps(payload)
            correct = {"allowed": True, "reason": None, "remaining": limit - PROJECTS_USED,
                       "upgrade": None}  # fmt: skip
            expected = api_expect(port, check_key, CHECK_PATH, payload, 200)
            if json.loads(expected) != correct:
                raise RuntimeError(f"the check answered {expected!r}, expected {correct}")
            healthz = Job("GET", HEALTHZ_PATH, {"Host": HOST, **PROXY_HEADERS})
            check = Job("POST", CHECK_PATH, api_headers(check_key), body.encode(), expected)

            for job in (healthz, check):  # every worker's connections and caches
                warm = load(
                    server, port, job, **load_options, seconds=args.warmup, max_requests=5000
                )
                if warm.errors:
                    raise RuntimeError(f"{warm.errors} errors while warming up {job.path}")
            results: dict[str, list[Round]] = {HEALTHZ_PATH: [], CHECK_PATH: []}
            for number in range(1, args.rounds + 1):
                for job in (healthz, check):
                    result = load(
                        server, port, job, **load_options, seconds=args.seconds,
                        max_requests=args.requests,
                    )  # fmt: skip
                    results[job.path].append(result)
                    print(round_line(number, args.rounds, result), flush=True)

            queries, round_trips, statements = check_costs(check_key, body.encode(), expected)
            stop(server)
            server_log = (data_dir / "server.log").read_text(errors="replace")[-2000:]
    finally:
        django_close()
        redis_cleanup(redis_url, key_prefix)
        database_drop(database_url)
        shutil.rmtree(data_dir, ignore_errors=True)

    base, checks = results[HEALTHZ_PATH], results[CHECK_PATH]
    ratios = [c.rps / h.rps for h, c in zip(base, checks, strict=True) if h.rps] or [0.0]
    base_errors, check_errors = sum(r.errors for r in base), sum(r.errors for r in checks)
    ok = base_errors == 0 and check_errors == 0 and min(ratios) > 0
    print(
        f"path={HEALTHZ_PATH} rps={spread([r.rps for r in base])}"
        f" p50_ms={statistics.median(r.percentile(50) for r in base):.2f}"
        f" p99_ms={statistics.median(r.percentile(99) for r in base):.2f}"
        f" server_cpu_ms={statistics.median(r.server_cpu_ms for r in base):.2f}"
        f" requests={sum(r.answered for r in base)} errors={base_errors} rounds={len(base)}",
        flush=True,
    )
    print(
        f"entitlement_checks_per_s={spread([r.rps for r in checks])}"
        f" p50_ms={statistics.median(r.percentile(50) for r in checks):.2f}"
        f" p99_ms={statistics.median(r.percentile(99) for r in checks):.2f}"
        f" server_cpu_ms={statistics.median(r.server_cpu_ms for r in checks):.2f}"
        f" check_vs_healthz={statistics.median(ratios):.2f}"
        f" ratio_min={min(ratios):.2f} ratio_max={max(ratios):.2f}"
        f" requests={sum(r.answered for r in checks)} errors={check_errors}"
        f" rounds={len(checks)} workers={args.workers}"
        f" connections={args.clients * args.threads} status={'ok' if ok else 'failed'}",
        flush=True,
    )
    print(
        f"check_sql_queries={queries:g} check_redis_round_trips={round_trips:g}"
        f" checks={IN_PROCESS_CHECKS}",
        flush=True,
    )
    for statement in statements[:10]:
        print(f"  SQL in a warm check: {statement[:300]}", file=sys.stderr)
    if not ok:
        print(f"server log (tail):\n{server_log}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
