"""How close to the framework's floor does Tollgate answer each kind of request?

The ceiling is a bare Django hello-world (bench/_hello.py: no middleware, no database) served by
the same server with the same flags as Tollgate (``manage.py serve``'s granian command line, only
the application differs). Tollgate runs in the production profile (``TOLLGATE_ENV=production``:
PostgreSQL, Redis, HTTPS behind one trusted proxy, rate limits on, every request logged) with the
demo catalog, an operator key for the entitlement check, a customer on a trial of Pro with
reported use, and a signed-in account on a trial of Pro for the billing page. Client processes send
requests over keep-alive connections (127.0.0.1 only; a round stops after a time cap or a number of
requests), in interleaved rounds over every path, so neighbouring rounds see the machine in the
same state:

    hello ``/``, ``/healthz`` (no I/O), ``/pricing/`` (anonymous), the entitlement check
    (``POST /api/v1/entitlements/check``), ``/billing/`` (signed in).

Every answer must be 200 (the check: with the body of the correct answer); anything else is an
error and fails the run. One line per path (medians over the rounds, with their range):

    path=/pricing/ rps=812.4 rps_min=.. rps_max=.. p99_ms=41.2 cpu_ms=1.9 vs_hello=0.41
        ratio_min=.. ratio_max=.. goal=0.5 met=no errors=0 rounds=3

``vs_hello`` is each round's rate over the hello-world's rate in the same round. ``cpu_ms`` is the
CPU time the server's processes used per request (from /proc), steadier than the rates on a shared
machine; the clients, PostgreSQL and Redis are not in it. ``goal`` is the share of the ceiling the
path is meant to reach.

The database (created here and dropped afterwards; its name must contain "bench") comes from
DATABASE_URL (default postgres://postgres@127.0.0.1:5432/tollgate_bench_pages); Redis from
BENCH_REDIS_URL (default redis://127.0.0.1:6379/13), whose keys from this run are deleted before and
after. Payments use the offline sandbox. Every process started here is stopped by its process group
(the servers) or its id (the clients), also when the run fails or is interrupted.

Usage: python bench/pages.py [--rounds 3] [--seconds 5] [--requests 50000] [--clients 2]
       [--threads 8] [--workers 2] [--warmup 2]
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import _procs
import entitlements as ent
from _procs import HOST, LOOPBACK, PROXY_HEADERS, ROOT, stop, stopped_on_exit
from entitlements import Job, Round

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tollgate_bench_pages"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
HELLO = "hello /"
CHECK = ent.CHECK_PATH
# The share of the hello-world's rate each path is meant to reach.
GOALS = {"/healthz": 0.6, "/pricing/": 0.5, CHECK: 0.5, "/billing/": 0.1}


def hello_start(env: dict[str, str], log_path: Path, *, workers: int) -> tuple[Any, int]:
    """The hello-world under ``serve``'s own server command line (needs Django set up here)."""
    from tollgate.ops.management.commands.serve import web_command

    port = _procs.free_port()
    argv = web_command(host=HOST, port=port, workers=workers)
    if argv[-1] != "tollgate.config.wsgi:application":
        raise RuntimeError(f"serve's command line changed shape: {argv}")
    argv[-1] = "_hello:application"  # the same server and flags, another application
    hello_env = {**env, "PYTHONPATH": str(ROOT / "bench")}
    hello_env.pop("DJANGO_SETTINGS_MODULE", None)
    with log_path.open("wb") as log:
        process = _procs.started(
            subprocess.Popen(
                argv, cwd=ROOT / "bench", env=hello_env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )  # fmt: skip
    _procs.wait_until_ready(port, process)
    return process, port


def signed_in_cookie() -> str:
    """A signed-in account on a trial of Pro; the Cookie header of its session."""
    from django.conf import settings
    from django.test import Client

    from tollgate.accounts.models import User
    from tollgate.billing import services
    from tollgate.catalog.models import Price

    user = User.objects.create_user(
        email=f"bench-{secrets.token_hex(6)}@example.com", password=secrets.token_urlsafe(24)
    )
    customer = services.customer_get_or_create(user=user)
    price = Price.objects.get(plan__code=ent.PLAN, interval="month", active=True)
    services.subscription_start(
        customer=customer, price=price, trial=True, idempotency_key=f"bench-{secrets.token_hex(8)}"
    )
    browser = Client()
    browser.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"


def summary(path: str, rounds: list[Round], hello: list[Round]) -> tuple[str, bool]:
    rates = [r.rps for r in rounds]
    ratios = [r.rps / h.rps for r, h in zip(rounds, hello, strict=True) if h.rps] or [0.0]
    errors = sum(r.errors for r in rounds)
    line = (
        f"path={path.removeprefix('hello ')} rps={statistics.median(rates):.1f}"
        f" rps_min={min(rates):.1f} rps_max={max(rates):.1f}"
        f" p99_ms={statistics.median(r.percentile(99) for r in rounds):.2f}"
        f" cpu_ms={statistics.median(r.server_cpu_ms for r in rounds):.2f}"
    )
    if path == HELLO:
        line = f"server=hello {line} errors={errors} rounds={len(rounds)}"
    else:
        goal = GOALS[path]
        line += (
            f" vs_hello={statistics.median(ratios):.2f} ratio_min={min(ratios):.2f}"
            f" ratio_max={max(ratios):.2f} goal={goal} met={'yes' if statistics.median(ratios) >= goal else 'no'}"
            f" errors={errors} rounds={len(rounds)}"
        )
    return line, errors == 0


def main() -> int:
    args = ent.options(__doc__.split("\n\n")[0], rounds=3)
    database_url = _procs.bench_database_url(DEFAULT_DATABASE_URL, "pages")
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    if (urlsplit(redis_url).hostname or "") not in LOOPBACK:
        raise SystemExit("the pages benchmark only uses a Redis on this machine")
    key_prefix = f"bench-pages-{secrets.token_hex(4)}"
    data_dir = Path(tempfile.mkdtemp(prefix="tollgate-bench-pages-"))
    env = _procs.production_environment(
        database_url=database_url, redis_url=redis_url, data_dir=data_dir, key_prefix=key_prefix
    ) | {"TOLLGATE_GATEWAY": "sandbox", "TOLLGATE_ALLOW_SANDBOX_IN_PRODUCTION": "true"}
    load_options = {"clients": args.clients, "threads": args.threads}
    results: dict[str, list[Round]] = {}
    try:
        with stopped_on_exit():
            _procs.redis_cleanup(redis_url, key_prefix)
            _procs.database_recreate(database_url)
            ent.tollgate(["migrate", "--no-input"], env)
            ent.tollgate(["catalog_load", "demo"], env)
            ent.tollgate(["collectstatic", "--no-input", "-v", "0"], env)  # the pages' styles
            check_key = ent.tollgate(
                ["api_key_create", "--name", "bench", "--scopes", "entitlements:read",
                 "--rate-limit", f"check={ent.CHECK_RATE}"],
                env,
            ).strip()  # fmt: skip
            setup_key = ent.tollgate(
                ["api_key_create", "--name", "bench set-up", "--scopes",
                 "customers:write,usage:write"],
                env,
            ).strip()  # fmt: skip
            server, port = _procs.serve_start(env, data_dir / "server.log", workers=args.workers)
            external_id = f"bench-{secrets.token_hex(6)}"
            ent.api_expect(
                port, setup_key, "/api/v1/customers",
                {"email": f"{external_id}@example.com", "external_id": external_id,
                 "name": "Bench"},
                201,
            )  # fmt: skip
            ent.django_setup(env)
            limit = ent.trial_start(external_id)
            ent.api_expect(
                port, setup_key, "/api/v1/usage",
                {"events": [{"id": f"{external_id}-projects", "customer": external_id,
                             "metric": ent.FEATURE, "quantity": ent.PROJECTS_USED,
                             "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]},
                200,
            )  # fmt: skip
            payload = json.dumps({"customer": external_id, "feature": ent.FEATURE, "quantity": 1})
            expected = ent.api_expect(port, check_key, CHECK, json.loads(payload), 200)
            if json.loads(expected)["remaining"] != limit - ent.PROJECTS_USED:
                raise RuntimeError(f"the check answered {expected!r}")
            cookie = signed_in_cookie()
            hello, hello_port = hello_start(env, data_dir / "hello.log", workers=args.workers)

            page = {"Host": HOST, **PROXY_HEADERS}
            jobs: list[tuple[str, Any, int, Job]] = [
                (HELLO, hello, hello_port, Job("GET", "/", {"Host": HOST})),
                ("/healthz", server, port, Job("GET", "/healthz", page)),
                ("/pricing/", server, port, Job("GET", "/pricing/", page)),
                (CHECK, server, port,
                 Job("POST", CHECK, ent.api_headers(check_key), payload.encode(), expected)),
                ("/billing/", server, port, Job("GET", "/billing/", page | {"Cookie": cookie})),
            ]  # fmt: skip
            for name, process, job_port, job in jobs:  # every worker's connections and caches
                warm = ent.load(
                    process, job_port, job, **load_options, seconds=args.warmup, max_requests=5000
                )
                if warm.errors:
                    log = (data_dir / "server.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(
                        f"{warm.errors} errors warming up {name}; server log:\n{log}"
                    )
            for number in range(1, args.rounds + 1):
                for name, process, job_port, job in jobs:
                    result = ent.load(
                        process, job_port, job, **load_options, seconds=args.seconds,
                        max_requests=args.requests,
                    )  # fmt: skip
                    results.setdefault(name, []).append(result)
                    print(ent.round_line(number, args.rounds, result), flush=True)
            stop(server)
            stop(hello)
            server_log = (data_dir / "server.log").read_text(errors="replace")[-2000:]
    finally:
        ent.django_close()
        _procs.redis_cleanup(redis_url, key_prefix)
        _procs.database_drop(database_url)
        shutil.rmtree(data_dir, ignore_errors=True)

    ok = True
    for name in results:
        line, clean = summary(name, results[name], results[HELLO])
        ok = ok and clean
        print(line, flush=True)
    if not ok:
        print(f"server log (tail):\n{server_log}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
