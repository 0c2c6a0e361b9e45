"""How many people at once does Tollgate serve with p99 under 200 ms and no error?

A load test with locust (bench/_locustfile.py: the simulated people and their mix) against the
production profile on this machine: ``TOLLGATE_ENV=production`` on PostgreSQL and Redis, rate
limits on, every request logged, payments on the offline sandbox. Each simulated person waits 8 to
12 s (10 s on average) between actions; the actions are, by weight, 60% entitlement checks with the
operator's API key, 20% the anonymous pricing page, 15% the signed-in billing page, and 5% split
evenly between a real sign-in (GET the form, POST it with its CSRF token), the receipt of a paid
invoice and the preview of a change to another price.

Set-up: a throw-away database (its name must contain "bench") with the demo catalog, an operator
key for the checks (``check=1000000/minute``: counted by the limiter, never refused), and
``--accounts`` accounts (200 by default, shared round-robin by the simulated people) created in
bulk: one password hash for all, a verified email, a saved sandbox card, a paid month of Pro (so a
paid invoice to show), and a signed-in session each (Django's test client ``force_login``).

Topology (``topology=`` in the result):
- ``direct`` (default): ``serve --no-worker`` (granian, the production server settings, ``--workers``
  processes) on a loopback port; locust plays the TLS-terminating proxy (TOLLGATE_TRUSTED_PROXIES=1):
  every request carries X-Forwarded-Proto https and an X-Forwarded-For address of the simulated
  person's own, so that the per-address sign-in limit (10 per 5 minutes) counts one person.
- ``nginx`` (``--through-nginx``): deploy/local_cluster.py's cluster, nginx (Debian's) in front of
  two web processes and two workers, with the production settings. nginx terminates TLS here (a
  throw-away self-signed certificate, on a second listener added through the site's
  TOLLGATE_LISTEN placeholder), since its site sets X-Forwarded-Proto to its own scheme and the
  production profile redirects plain HTTP. It appends the address it saw to X-Forwarded-For, so
  locust plays an outer load balancer: TOLLGATE_TRUSTED_PROXIES=2, and each simulated person's
  address still reaches Tollgate. nginx's own limits (worker_connections 512) are measured too.

The user count steps up (``--start-users``, doubled each step up to ``--max-users``, then
``--refine`` bisection steps between the last held and the first failed count). Each step is a
locust run of its own (a fresh process, ``--load-processes`` worker processes): ``--spawn-seconds``
to start every user, then ``--hold`` seconds measured, over the requests sent once every user runs
(exact times written by the locustfile; locust's own percentiles are rounded). A first run of
``--warmup`` seconds is not counted (the web processes' connections, caches and templates); a
step that fails is run ``--retries`` more times before it counts (the machine is shared: one burst
of someone else's work should not end the search). An error is a
status other than the expected one, a page without its expected content, a check that does not
allow, or no answer within 30 s. The whole run, set-up included, stays within ``--max-seconds``; a
step that would not fit is not started (``capped=yes``).

Two counts are reported. ``concurrent_users`` is the requirement's: the largest step with p99 of
every request under ``--p99-ms`` and no error. The sign-in POST is 1.6% of the requests (more than
1%) and hashes a password with Argon2 (Django's parameters: 100 MiB of memory, two passes; hundreds
of milliseconds of CPU on this machine, by design), so it alone decides that p99 once it takes
longer than the bound.
``concurrent_users_sign_in_aside`` is the largest step with p99 of every request but the sign-in
POST under the bound and no error at all (the sign-in's own p99 is in each step's line); the steps
follow this count, and the strict one is read from the same steps.

Result lines: one per step, then the counts:

    step=1 users=100 rps=10.1 expected_rps=10.2 p50_ms=14 p99_ms=640 failures=0 requests=303
        held=no p99_sign_in_aside_ms=62 p99_sign_in_ms=700 held_sign_in_aside=yes
        generator_cpu_pct=9 generator_saturated=no server_cpu_pct=21 machine_busy_pct=64
    concurrent_users=0 goal=10000 met=no concurrent_users_sign_in_aside=800 topology=direct ...

``generator_cpu_pct`` is the CPU the locust processes used (100 = one core; ``generator_saturated``:
locust warned that a process of its passed 90%), ``server_cpu_pct`` the server's processes' (with
nginx: nginx, the web processes and the workers), ``machine_busy_pct`` the whole machine's over
every core (PostgreSQL, Redis and whoever else shares the machine included). The latencies
include the load generator's own delays: on a machine this small it competes with the server for
the same cores, so the counts are floors, not ceilings.

The database comes from DATABASE_URL (default postgres://postgres@127.0.0.1:5432/tollgate_bench_load,
dropped afterwards); Redis from BENCH_REDIS_URL (default redis://127.0.0.1:6379/14, the keys of the
run deleted before and after). Every process started here is stopped by its process group, also
when the run fails, times out or is interrupted.

Usage: python bench/load.py [--max-seconds 600] [--start-users 100] [--max-users 10000]
       [--hold 30] [--spawn-seconds 10] [--refine 2] [--retries 1] [--warmup 15]
       [--accounts 200] [--load-processes 2]
       [--workers 2] [--p99-ms 200] [--only check,sign-in,...] [--through-nginx]

``--only`` runs some actions of the mix alone (tags: check, pricing, billing, receipt, change,
sign-in), with their weights among themselves (``expected_rps`` assumes the whole mix).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import _procs
import entitlements as ent
from _procs import HOST, LOOPBACK, ROOT, stopped_on_exit

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tollgate_bench_load"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
LOCUSTFILE = Path(__file__).resolve().parent / "_locustfile.py"
THINK = "between(8,12)"
GOAL_USERS = 10_000
MIX = "check60,pricing20,billing15,signin_receipt_change5"
PAID_PRICE = ("pro", "month")
OTHER_PRICE = ("business", "month")  # the plan-change preview: an upgrade, prorated now
STEP_OVERHEAD_SECONDS = 8.0  # locust's start and stop around a step
SETUP_THREADS = 4
SIGN_IN_POST = "sign-in"  # the request name of the sign-in POST in bench/_locustfile.py
# Requests per action of the mix: the sign-in is two (its form, then the POST), 5 in 300 actions.
REQUESTS_PER_ACTION = 305 / 300
TAGS = ("check", "pricing", "billing", "receipt", "change", "sign-in")
CAVEAT = "two_cores_shared_by_server_databases_load_generator_and_other_work"


def percentile(ordered: list[float], q: float) -> float:
    """The ``q``th percentile of sorted values (nearest rank); NaN when there are none."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


@dataclass(frozen=True)
class Step:
    number: int
    users: int
    requests: int
    failures: int
    seconds: float  # measured: from all users running to the last request sent
    p50_ms: float
    p99_ms: float
    p99_sign_in_aside_ms: float  # every request but the sign-in POST (its password hash)
    p99_sign_in_ms: float  # the sign-in POST alone
    generator_cpu_pct: float
    server_cpu_pct: float
    machine_busy_pct: float
    saturated: bool  # locust said its CPU was above 90%
    p99_limit_ms: float

    @property
    def held(self) -> bool:
        return self.requests > 0 and self.failures == 0 and self.p99_ms < self.p99_limit_ms

    @property
    def held_sign_in_aside(self) -> bool:
        return (
            self.requests > 0
            and self.failures == 0
            and self.p99_sign_in_aside_ms < self.p99_limit_ms
        )

    def line(self) -> str:
        return (
            f"step={self.number} users={self.users} rps={self.requests / self.seconds:.1f}"
            f" expected_rps={self.users * REQUESTS_PER_ACTION / 10:.1f}"
            f" p50_ms={self.p50_ms:.0f} p99_ms={self.p99_ms:.0f} failures={self.failures}"
            f" requests={self.requests} held={'yes' if self.held else 'no'}"
            f" p99_sign_in_aside_ms={self.p99_sign_in_aside_ms:.0f}"
            f" p99_sign_in_ms={self.p99_sign_in_ms:.0f}"
            f" held_sign_in_aside={'yes' if self.held_sign_in_aside else 'no'}"
            f" generator_cpu_pct={self.generator_cpu_pct:.0f}"
            f" generator_saturated={'yes' if self.saturated else 'no'}"
            f" server_cpu_pct={self.server_cpu_pct:.0f}"
            f" machine_busy_pct={self.machine_busy_pct:.0f}"
        )


# --- Set-up ----------------------------------------------------------------------------------------
def accounts_create(count: int, password: str) -> list[dict[str, str]]:
    """``count`` signed-up accounts (one password hash for all, inserted in bulk), each with a
    saved sandbox card, a paid month of Pro and a signed-in session; what the simulated people
    need of each."""
    from allauth.account.models import EmailAddress
    from django.conf import settings
    from django.contrib.auth.hashers import make_password
    from django.db import connection
    from django.test import Client

    from tollgate.accounts.models import User
    from tollgate.billing import services
    from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
    from tollgate.billing.models import Invoice
    from tollgate.billing.states import InvoiceStatus
    from tollgate.catalog.models import Price

    price = Price.objects.get(
        plan__code=PAID_PRICE[0], interval=PAID_PRICE[1], currency="USD", active=True
    )
    run = secrets.token_hex(4)
    hashed = make_password(password)
    users = User.objects.bulk_create(
        [User(email=f"load-{run}-{n}@example.com", password=hashed) for n in range(count)]
    )
    EmailAddress.objects.bulk_create(
        [EmailAddress(user=u, email=u.email, verified=True, primary=True) for u in users]
    )

    def ready(number: int, user: User) -> dict[str, str]:
        try:
            customer = services.customer_get_or_create(user=user)
            setup = services.payment_method_setup_start(
                customer=customer, return_url=f"https://{HOST}/billing/"
            )
            SandboxGateway().setup_submit(
                session_reference=setup.reference, number="4242424242424242", exp_month=12,
                exp_year=2099,
            )  # fmt: skip
            services.payment_method_attach(customer=customer, setup_reference=setup.reference)
            subscription = services.subscription_start(
                customer=customer, price=price, trial=False, idempotency_key=f"load-{run}-{number}"
            )
            invoice = Invoice.objects.get(subscription=subscription)
            if invoice.status != InvoiceStatus.PAID:
                raise RuntimeError(f"the first invoice is {invoice.status}, not paid")
            browser = Client()
            browser.force_login(user)
            return {
                "email": user.email,
                "customer": customer.public_id,
                "invoice": invoice.public_id,
                "invoice_number": str(invoice.number),
                "session": browser.cookies[settings.SESSION_COOKIE_NAME].value,
                # The address the account's session is used from (198.18.0.0/15, apart from the
                # simulated people's own in 10.0.0.0/8).
                "address": f"198.18.{number // 250}.{number % 250 + 1}",
            }
        finally:
            connection.close()  # this thread's own

    # A few threads: each account's writes mostly wait on the database.
    with ThreadPoolExecutor(max_workers=SETUP_THREADS) as pool:
        return list(pool.map(ready, range(len(users)), users))


def load_plan(
    *, base_url: str, api_key: str, password: str, accounts: list[dict[str, str]]
) -> dict[str, Any]:
    from django.conf import settings

    from tollgate.catalog.models import Price

    other = Price.objects.get(
        plan__code=OTHER_PRICE[0], interval=OTHER_PRICE[1], currency="USD", active=True
    )
    return {
        "base_url": base_url,
        "host": HOST,
        "scheme": "https",  # what the browser's side speaks, whoever terminates TLS
        "api_key": api_key,
        "feature": ent.FEATURE,
        "password": password,
        "accounts": accounts,
        "other_price": other.public_id,
        "session_cookie": settings.SESSION_COOKIE_NAME,
        "csrf_cookie": settings.CSRF_COOKIE_NAME,
        "pricing_marker": "Business",
        "billing_marker": "Pro",
        "change_marker": 'id="preview-heading"',
    }


def local_cluster_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "tollgate_local_cluster", ROOT / "deploy" / "local_cluster.py"
    )
    if spec is None or spec.loader is None:
        raise RuntimeError("deploy/local_cluster.py cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def cluster_start(
    env: dict[str, str], environ: dict[str, str], run_dir: Path
) -> tuple[list[Any], int]:
    """nginx in front of two web processes and two workers (deploy/local_cluster.py), with the
    production settings in ``env`` (what differs from ``environ``, this process's environment
    before Django was set up here); every process tracked so that it is stopped on exit. nginx
    also terminates TLS, on a port of its own with a throw-away self-signed certificate (the
    site's TOLLGATE_LISTEN placeholder gets the second listener); returns that port."""
    module = local_cluster_module()
    if module.nginx_binary() is None:
        raise SystemExit("--through-nginx needs nginx (scripts/ensure-nginx installs it)")
    run_dir.mkdir(parents=True)
    certificate, key = run_dir / "tls.crt", run_dir / "tls.key"
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SystemExit("--through-nginx needs openssl, for a throw-away TLS certificate")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={HOST}", "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    tls_port = _procs.free_port()
    render = module.render

    def render_with_tls(template: Path, values: dict[str, str]) -> str:
        if template.name == "tollgate.conf.template":
            values = values | {
                "TOLLGATE_LISTEN": f"{values['TOLLGATE_LISTEN']};\n"
                f"    listen {HOST}:{tls_port} ssl;\n"
                f"    ssl_certificate {certificate};\n    ssl_certificate_key {key}"
            }
        return str(render(template, values))

    module.render = render_with_tls
    cluster = module.LocalCluster(
        run_dir=run_dir,
        database_url=env["DATABASE_URL"],
        redis_url=env["REDIS_URL"],
        nginx_port=_procs.free_port(),
        web_ports=[_procs.free_port(), _procs.free_port()],
        workers=2,
        extra_environ={k: v for k, v in env.items() if environ.get(k) != v},
    )
    try:
        cluster.start()
    finally:
        for process in cluster.processes.values():
            _procs.started(process)
    return list(cluster.processes.values()), tls_port


# --- Steps -----------------------------------------------------------------------------------------
def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat (Linux)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def locust_step(
    number: int,
    users: int,
    *,
    args: argparse.Namespace,
    servers: list[Any],
    plan_path: Path,
    work_dir: Path,
    environ: dict[str, str],
    hold: float | None = None,
) -> Step:
    """One locust run of ``users`` people: started over ``--spawn-seconds``, measured over
    ``hold`` seconds (``--hold`` by default); locust in a process (group) of its own, stopped by
    it on exit."""
    hold = args.hold if hold is None else hold
    records = work_dir / f"step{number}"
    records.mkdir()
    argv = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--users", str(users), "--spawn-rate", f"{users / args.spawn_seconds:.2f}",
        "--run-time", f"{int(args.spawn_seconds + hold)}s", "--stop-timeout", "0",
        "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    if args.only:
        argv += ["--tags", *args.only.split(",")]
    if args.load_processes > 1:
        argv += ["--processes", str(args.load_processes)]
    log_path = work_dir / f"step{number}.log"
    server_cpu_before = sum(_procs.family_cpu_seconds(s.pid) for s in servers)
    busy_before, total_before = machine_ticks()
    children_before = children_cpu()
    started = time.monotonic()
    generator_cpu = 0.0
    locust_env = environ | {
        "TOLLGATE_LOAD_PLAN": str(plan_path),
        "TOLLGATE_LOAD_RECORDS": str(records),
    }
    with log_path.open("wb") as log:
        process = _procs.started(
            subprocess.Popen(
                argv, cwd=ROOT / "bench", env=locust_env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )  # fmt: skip
        deadline = started + args.spawn_seconds + hold + 60
        while process.poll() is None and time.monotonic() < deadline:
            generator_cpu = max(generator_cpu, _procs.family_cpu_seconds(process.pid))
            time.sleep(0.5)
        _procs.stop(process)
    seconds = time.monotonic() - started
    generator_cpu = max(generator_cpu, children_cpu() - children_before)
    server_cpu = sum(_procs.family_cpu_seconds(s.pid) for s in servers) - server_cpu_before
    busy_after, total_after = machine_ticks()
    log = log_path.read_text(errors="replace")
    marker = records / "measured_from"
    if not marker.exists():
        raise RuntimeError(f"locust did not start all {users} users; its log:\n{log[-3000:]}")
    measured_from = float(marker.read_text().split()[0])
    sent: list[tuple[float, float, bool, str]] = []
    for path in records.glob("*.txt"):
        for line in path.read_text(encoding="utf-8").splitlines():
            at, took, failed, name = line.split(" ", 3)
            if float(at) >= measured_from:
                sent.append((float(at), float(took), failed == "1", name))
    by_name: dict[str, list[float]] = {}
    for _, took, _, name in sent:
        by_name.setdefault(name, []).append(took)
    for name, times in sorted(by_name.items()):
        times.sort()
        failed = sum(1 for _, _, bad, other in sent if bad and other == name)
        print(
            f"  {users} users, {name}: {len(times)} requests, {failed} failed,"
            f" p50 {percentile(times, 50):.0f} ms, p99 {percentile(times, 99):.0f} ms",
            flush=True,
        )
    for line in log.splitlines():
        if "Error" in line or "error" in line or "CPU" in line or "cpu" in line:
            print(f"  locust: {line[:300]}", flush=True)
    every = sorted(took for _, took, _, _ in sent)
    aside = sorted(took for _, took, _, name in sent if name != SIGN_IN_POST)
    busy_share = (busy_after - busy_before) / max(1, total_after - total_before)
    return Step(
        number=number,
        users=users,
        requests=len(sent),
        failures=sum(1 for _, _, bad, _ in sent if bad),
        seconds=max((at for at, _, _, _ in sent), default=measured_from + 1) - measured_from,
        p50_ms=percentile(every, 50),
        p99_ms=percentile(every, 99),
        p99_sign_in_aside_ms=percentile(aside, 99),
        p99_sign_in_ms=percentile(sorted(by_name.get(SIGN_IN_POST, [])), 99),
        generator_cpu_pct=100 * generator_cpu / seconds,
        server_cpu_pct=100 * server_cpu / seconds,
        machine_busy_pct=100 * busy_share,
        saturated="CPU usage above 90%" in log or "exceeded cpu threshold" in log,
        p99_limit_ms=args.p99_ms,
    )


def step_seconds(args: argparse.Namespace) -> float:
    return args.spawn_seconds + args.hold + STEP_OVERHEAD_SECONDS


def rounded(users: int) -> int:
    return max(1, round(users / 50) * 50) if users >= 100 else users


# --- Main ------------------------------------------------------------------------------------------
def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-seconds", type=float, default=600, help="cap on the whole run")
    parser.add_argument("--start-users", type=int, default=100, help="users of the first step")
    parser.add_argument("--max-users", type=int, default=GOAL_USERS, help="users of the last step")
    parser.add_argument("--hold", type=float, default=30, help="seconds measured per step")
    parser.add_argument("--spawn-seconds", type=float, default=10, help="seconds to start users")
    parser.add_argument("--refine", type=int, default=2, help="bisection steps after a failure")
    parser.add_argument(
        "--retries", type=int, default=1, help="failed steps run once more before they count"
    )
    parser.add_argument(
        "--warmup", type=float, default=15, help="seconds of an uncounted first run (0: none)"
    )
    parser.add_argument("--accounts", type=int, default=200, help="accounts shared by the users")
    parser.add_argument("--load-processes", type=int, default=2, help="locust worker processes")
    parser.add_argument("--workers", type=int, default=2, help="web processes (direct topology)")
    parser.add_argument("--p99-ms", type=float, default=200, help="the p99 a held step stays under")
    parser.add_argument(
        "--only", default="", help="only these actions (tags of bench/_locustfile.py, e.g. check)"
    )
    parser.add_argument(
        "--through-nginx", action="store_true", help="nginx in front (deploy/local_cluster.py)"
    )
    args = parser.parse_args()
    if not (
        60 <= args.max_seconds <= 3600
        and 1 <= args.start_users <= args.max_users <= 50_000
        and 5 <= args.hold <= 300
        and 1 <= args.spawn_seconds <= 120
        and 0 <= args.refine <= 10
        and 0 <= args.retries <= 5
        and 0 <= args.warmup <= 120
        and 1 <= args.accounts <= 5000
        and 1 <= args.load_processes <= 8
        and 1 <= args.workers <= 8
        and 1 <= args.p99_ms <= 10_000
        and all(t in TAGS for t in args.only.split(",") if args.only)
    ):
        parser.error(
            "need 60 <= --max-seconds <= 3600, 1 <= --start-users <= --max-users <= 50000,"
            " 5 <= --hold <= 300, 1 <= --spawn-seconds <= 120, 0 <= --refine <= 10,"
            " 0 <= --retries <= 5, 0 <= --warmup <= 120,"
            " 1 <= --accounts <= 5000, 1 <= --load-processes <= 8, 1 <= --workers <= 8,"
            f" 1 <= --p99-ms <= 10000, --only among {','.join(TAGS)}"
        )
    return args


def main() -> int:
    args = options()
    began = time.monotonic()
    end_by = began + args.max_seconds
    database_url = _procs.bench_database_url(DEFAULT_DATABASE_URL, "load")
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    if (urlsplit(redis_url).hostname or "") not in LOOPBACK:
        raise SystemExit("the load benchmark only uses a Redis on this machine")
    environ = dict(os.environ)  # locust's, before Django's settings are set up here
    key_prefix = f"bench-load-{secrets.token_hex(4)}"
    data_dir = Path(tempfile.mkdtemp(prefix="tollgate-bench-load-"))
    env = _procs.production_environment(
        database_url=database_url, redis_url=redis_url, data_dir=data_dir, key_prefix=key_prefix
    ) | {"TOLLGATE_GATEWAY": "sandbox", "TOLLGATE_ALLOW_SANDBOX_IN_PRODUCTION": "true"}
    topology = "nginx" if args.through_nginx else "direct"
    if args.through_nginx:
        env["TOLLGATE_TRUSTED_PROXIES"] = "2"  # locust's X-Forwarded-For, then nginx's
    password = secrets.token_urlsafe(18)
    steps: list[Step] = []
    capped = False
    try:
        with stopped_on_exit():
            _procs.redis_cleanup(redis_url, key_prefix)
            _procs.database_recreate(database_url)
            ent.tollgate(["migrate", "--no-input"], env)
            ent.tollgate(["catalog_load", "demo"], env)
            ent.tollgate(["collectstatic", "--no-input", "-v", "0"], env)  # the pages' styles
            check_key = ent.tollgate(
                ["api_key_create", "--name", "bench load", "--scopes", "entitlements:read",
                 "--rate-limit", f"check={ent.CHECK_RATE}"],
                env,
            ).strip()  # fmt: skip
            ent.django_setup(env)
            created = time.monotonic()
            accounts = accounts_create(args.accounts, password)
            print(
                f"{len(accounts)} accounts with a paid invoice and a session in"
                f" {time.monotonic() - created:.1f} s",
                flush=True,
            )
            # Everything is written before a server caches anything (no worker runs the outbox
            # that would drop a cached copy after a change in the direct topology).
            if args.through_nginx:
                servers, port = cluster_start(env, environ, data_dir / "cluster")
                web_processes = 2
            else:
                server, port = _procs.serve_start(
                    env, data_dir / "server.log", workers=args.workers
                )
                servers, web_processes = [server], args.workers
            plan = load_plan(
                base_url=f"{'https' if args.through_nginx else 'http'}://{HOST}:{port}",
                api_key=check_key,
                password=password,
                accounts=accounts,
            )
            plan_path = data_dir / "plan.json"
            plan_path.write_text(json.dumps(plan), encoding="utf-8")
            print(f"set-up done in {time.monotonic() - began:.0f} s; topology={topology}")

            step_options = {
                "args": args, "servers": servers, "plan_path": plan_path, "work_dir": data_dir,
                "environ": environ,
            }  # fmt: skip
            if args.warmup:  # every web process's connections, caches and templates; not counted
                warm = locust_step(0, args.start_users, **step_options | {"hold": args.warmup})
                print(f"warm-up: {warm.line()}", flush=True)
            held, failed, users, refine = 0, 0, args.start_users, args.refine
            tries: dict[int, int] = {}
            while users and time.monotonic() + step_seconds(args) <= end_by:
                step = locust_step(len(steps) + 1, users, **step_options)
                steps.append(step)
                print(step.line(), flush=True)
                tries[users] = tries.get(users, 0) + 1
                if not step.held_sign_in_aside and tries[users] <= args.retries:
                    continue  # once more before it counts: a burst of the neighbours', or ours?
                # Stepped by the count held with the sign-in POST aside: the strict count (every
                # request under the bound) is read from the same steps.
                if step.held_sign_in_aside:
                    held = max(held, users)
                else:
                    failed = min(failed, users) if failed else users
                if not failed:
                    users = min(users * 2, args.max_users) if users < args.max_users else 0
                    continue
                if refine <= 0:
                    users = 0
                    break
                refine -= 1
                middle = rounded((held + failed) // 2) if held else rounded(failed // 2)
                users = middle if held < middle < failed else 0
            if users and time.monotonic() + step_seconds(args) > end_by:
                print(f"the next step ({users} users) does not fit in --max-seconds", flush=True)
            capped = bool(users)
            for process in servers:
                _procs.stop(process)
    finally:
        ent.django_close()
        _procs.redis_cleanup(redis_url, key_prefix)
        _procs.database_drop(database_url)
        shutil.rmtree(data_dir, ignore_errors=True)

    held_users = max((s.users for s in steps if s.held), default=0)
    aside_users = max((s.users for s in steps if s.held_sign_in_aside), default=0)
    generator = max((s.generator_cpu_pct for s in steps), default=0.0)
    print(
        f"concurrent_users={held_users} goal={GOAL_USERS}"
        f" met={'yes' if held_users >= GOAL_USERS else 'no'}"
        f" concurrent_users_sign_in_aside={aside_users} p99_limit_ms={args.p99_ms:g}"
        f" topology={topology} web_processes={web_processes} think={THINK}"
        f" mix={('only:' + args.only) if args.only else MIX} accounts={args.accounts}"
        f" steps={len(steps)} capped={'yes' if capped else 'no'} hold_s={args.hold:g}"
        f" spawn_s={args.spawn_seconds:g} warmup_s={args.warmup:g} retries={args.retries}"
        f" load_processes={args.load_processes}"
        f" generator_cpu_pct_max={generator:.0f}"
        f" seconds={time.monotonic() - began:.0f} cores={os.cpu_count()} caveat={CAVEAT}",
        flush=True,
    )
    return 0 if steps else 1


if __name__ == "__main__":
    raise SystemExit(main())
