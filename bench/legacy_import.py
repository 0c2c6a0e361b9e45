"""How long does ``import_legacy`` take for a 100,000-user legacy data set?

For each run, on a fresh database (created here and dropped afterwards):

1. migrate and load the demo catalog;
2. generate a legacy data set in a temporary directory (the layout of docs/migration.md): N users
   (70 % with a Stripe customer), 60 % of them with a subscription (most active, monthly or
   yearly, some trialing, a quarter canceled), their past payments (a few in dollars with a
   fraction, a few declined attempts that are left out), and the plan map;
3. time the check (reading and validating the files, then the conflicts with the database) and
   the import (the default batch size, one transaction per batch), then a second run of the
   import (which finds everything imported and changes nothing);
4. verify: the counts of users, subscriptions and paid invoices, and ``ledger_check``.

One result line per run, for example::

    legacy_import users=100000 subscriptions=60000 payments=150000 records=310000 check_s=9.1
    import_s=80.2 records_per_s=3865 rerun_s=6.0 ledger=balanced database=postgresql status=ok

``records`` counts the users, subscriptions and payments imported (each payment is an invoice, its
line, its payment and two ledger transactions of two entries each).

The database comes from DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/tollgate_bench_legacy); it is dropped and recreated, so its name
must contain "bench". With ``--sqlite`` the run uses a fresh SQLite file in a temporary directory
instead (the embedded default).

Usage: python bench/legacy_import.py [--users 100000] [--runs 1] [--sqlite] [--batch-size N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _procs
from _procs import database_drop, database_recreate

ROOT = _procs.ROOT
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tollgate_bench_legacy"
PLAN_MAP = {
    "basic_monthly": {"plan": "starter", "interval": "month", "currency": "USD"},
    "basic_yearly": {"plan": "starter", "interval": "year", "currency": "USD"},
    "pro_monthly": {"plan": "pro", "interval": "month", "currency": "USD"},
    "pro_yearly": {"plan": "pro", "interval": "year", "currency": "USD"},
    "team_monthly": {"plan": "business", "interval": "month", "currency": "USD"},
}
AMOUNTS = {
    "basic_monthly": 900,
    "basic_yearly": 9000,
    "pro_monthly": 2900,
    "pro_yearly": 29000,
    "team_monthly": 9900,
}


def environment(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "TOLLGATE_ENV": "development",
        "DEBUG": "false",  # DEBUG keeps every query in memory: not what production does
        "DATABASE_URL": database_url,
        "TOLLGATE_DATA_DIR": str(data_dir),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "LOG_LEVEL": "WARNING",
        "TOLLGATE_GATEWAY": "sandbox",
        "TOLLGATE_INVOICE_NUMBERING": "customer",
        "DJANGO_SETTINGS_MODULE": "tollgate.config.settings",
    }
    for name in ("REDIS_URL", "SENTRY_DSN", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    return env


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def generate(directory: Path, users: int, now: dt.datetime, seed: int = 7) -> dict[str, int]:
    """Write a legacy data set of ``users`` users into ``directory``; returns what it holds."""
    from tollgate.billing import periods

    rng = random.Random(seed)
    user_rows: list[dict[str, Any]] = []
    subscription_rows: list[dict[str, Any]] = []
    payment_rows: list[dict[str, Any]] = []

    def pay(
        user_id: int, amount: int, at: dt.datetime, plan: str, status: str = "succeeded"
    ) -> None:
        number = len(payment_rows) + 1
        # About one old record in a hundred holds dollars with a fraction, as the first portal did.
        value: Any = amount / 100 if rng.random() < 0.01 else amount
        payment_rows.append(
            {
                "id": number,
                "user_id": user_id,
                "amount": value,
                "currency": "usd",
                "status": status,
                "created_at": iso(at),
                "stripe_payment_intent_id": f"pi_{number:012d}",
                "description": plan.replace("_", " ").title(),
            }
        )

    for user_id in range(1, users + 1):
        created = now - dt.timedelta(days=rng.randint(30, 1500), seconds=rng.randint(0, 86_399))
        user_rows.append(
            {
                "id": user_id,
                "email": f"user{user_id}@example.com",
                "name": f"User {user_id}",
                "created_at": iso(created),
                "stripe_customer_id": f"cus_{user_id:010d}" if rng.random() < 0.7 else None,
                "email_verified": rng.random() < 0.9,
            }
        )
        if rng.random() >= 0.6:
            continue
        plan = rng.choice(list(PLAN_MAP))
        months = 12 if plan.endswith("yearly") else 1
        amount = AMOUNTS[plan]
        row: dict[str, Any] = {
            "id": f"s{user_id}",
            "user_id": user_id,
            "plan": plan,
            "stripe_subscription_id": f"sub_{user_id:010d}",
            "cancel_at_period_end": False,
        }
        kind = rng.random()
        if kind < 0.05:  # trialing
            start = now - dt.timedelta(days=rng.randint(0, 12), seconds=rng.randint(1, 86_399))
            trial_end = start + dt.timedelta(days=14)
            row |= {
                "status": "trialing",
                "current_period_start": iso(start),
                "current_period_end": iso(trial_end),
                "trial_end": iso(trial_end),
            }
        elif kind < 0.80:  # active: payments of each period from the anchor
            anchor = now - dt.timedelta(days=rng.randint(1, 900), seconds=rng.randint(0, 86_399))
            period = periods.period_at(anchor=anchor, months=months, at=now)
            row |= {
                "status": "active",
                "billing_cycle_anchor": iso(anchor),
                "current_period_start": iso(period.start),
                "current_period_end": iso(period.end),
                "cancel_at_period_end": rng.random() < 0.05,
            }
            index = 0
            while True:
                paid = periods.period_number(anchor=anchor, months=months, index=index)
                if paid.start > now or index >= 6:
                    break
                if rng.random() < 0.03:
                    pay(user_id, amount, paid.start, plan, status="requires_payment_method")
                pay(user_id, amount, paid.start + dt.timedelta(seconds=5), plan)
                index += 1
        else:  # canceled some time ago
            start = now - dt.timedelta(days=rng.randint(60, 900))
            end = periods.shift_months(start, months)
            row |= {
                "status": "canceled",
                "current_period_start": iso(start),
                "current_period_end": iso(end),
                "canceled_at": iso(start + dt.timedelta(days=3)),
                "ended_at": iso(end),
            }
            pay(user_id, amount, start + dt.timedelta(seconds=5), plan)
        subscription_rows.append(row)

    for name, rows in (
        ("users.json", user_rows),
        ("subscriptions.json", subscription_rows),
        ("payments.json", payment_rows),
        ("plan_map.json", PLAN_MAP),
    ):
        (directory / name).write_text(json.dumps(rows), encoding="utf-8")
    return {
        "users": len(user_rows),
        "subscriptions": len(subscription_rows),
        "payments": sum(1 for row in payment_rows if row["status"] == "succeeded"),
    }


def django_release() -> None:
    from django.db import connections

    for connection in connections.all():
        connection.close()
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()


def measure(args: argparse.Namespace, database_url: str, work: Path) -> tuple[str, bool, float]:
    from django.core.management import call_command
    from django.db import connection

    from tollgate.billing.integrity import ledger_check
    from tollgate.billing.models import Invoice, Subscription
    from tollgate.legacy.conflicts import dataset_check_database
    from tollgate.legacy.importer import legacy_import
    from tollgate.legacy.validation import dataset_load

    django_release()
    if args.sqlite:
        Path(database_url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    else:
        database_recreate(database_url)
    call_command("migrate", verbosity=0, interactive=False)
    call_command("catalog_load", "demo", verbosity=0, stdout=io.StringIO())
    data = work / "legacy"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir()
    from tollgate.core import clock

    held = generate(data, args.users, clock.now())
    print(f"generated {held} in {data}", flush=True)

    started = time.perf_counter()
    dataset = dataset_load(data)
    dataset_check_database(dataset)
    check_seconds = time.perf_counter() - started
    if dataset.problems:
        print("\n".join(str(problem) for problem in dataset.problems[:20]), file=sys.stderr)
        raise SystemExit(f"the generated data set has {len(dataset.problems)} problems")

    started = time.perf_counter()
    result = legacy_import(dataset=dataset, batch_size=args.batch_size)
    import_seconds = time.perf_counter() - started
    if not args.sqlite:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    started = time.perf_counter()
    again = legacy_import(dataset=dataset, batch_size=args.batch_size)
    rerun_seconds = time.perf_counter() - started

    report = ledger_check()
    records = result.users + result.subscriptions + result.payments
    ok = (
        report.ok
        and (result.users, result.subscriptions, result.payments)
        == (held["users"], held["subscriptions"], held["payments"])
        and Subscription.objects.count() == held["subscriptions"]
        and Invoice.objects.filter(status="paid").count() == held["payments"]
        and (again.users, again.subscriptions, again.payments) == (0, 0, 0)
    )
    rate = records / import_seconds if import_seconds else 0.0
    line = (
        f"legacy_import users={result.users} subscriptions={result.subscriptions}"
        f" payments={result.payments} records={records} check_s={check_seconds:.1f}"
        f" import_s={import_seconds:.1f} records_per_s={rate:.0f} rerun_s={rerun_seconds:.1f}"
        f" batch_size={args.batch_size}"
        f" ledger={'balanced' if report.ok else f'{len(report.problems)}_problems'}"
        f" database={connection.vendor} status={'ok' if ok else 'failed'}"
    )
    django_release()
    return line, ok, rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--sqlite", action="store_true", help="a fresh SQLite file, not PostgreSQL")
    args = parser.parse_args()
    if args.users < 1 or not 1 <= args.runs <= 10 or args.batch_size < 1:
        parser.error("need --users >= 1, 1 <= --runs <= 10 and --batch-size >= 1")
    work = Path(tempfile.mkdtemp(prefix="tollgate-bench-legacy-"))
    if args.sqlite:
        database_url = f"sqlite:///{work / 'bench.sqlite3'}"
    else:
        database_url = _procs.bench_database_url(DEFAULT_DATABASE_URL, "legacy import")
        try:
            database_recreate(database_url)
        except Exception as exc:  # no server, no rights: say so rather than a traceback
            print(f"note: cannot create the benchmark database ({type(exc).__name__}: {exc})")
            shutil.rmtree(work, ignore_errors=True)
            return 1
    os.environ.update(environment(database_url, work))
    import django

    django.setup()
    rates: list[float] = []
    ok = True
    try:
        for _ in range(args.runs):
            line, run_ok, rate = measure(args, database_url, work)
            print(line, flush=True)
            rates.append(rate)
            ok = ok and run_ok
    finally:
        django_release()
        if not args.sqlite:
            database_drop(database_url)
        shutil.rmtree(work, ignore_errors=True)
    if len(rates) > 1:
        print(
            f"legacy_import_summary runs={len(rates)} records_per_s_min={min(rates):.0f}"
            f" records_per_s_median={statistics.median(rates):.0f}"
            f" records_per_s_max={max(rates):.0f}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
