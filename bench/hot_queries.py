"""The hot queries at scale: every SQL statement that the pages, the API, the billing clock (with
dunning), reconciliation and the staff lookup send, timed against a large dataset
(``bench/dataset.py``: 1,000,000 customers and 10,000,000 invoices by default) and checked with
``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` for sequential scans of the dataset's tables.

The statements are not written here: each case runs the real code path (a page or an API call
through Django's test client, ``billing_run``, ``reconciliation_run``, the staff lookup's
selector and table) under a database execute wrapper, and every SELECT it sent is then run again
``--repeat`` times with its own parameters. One line per statement::

    query=billing_page.3.billing_invoice p50_ms=0.21 p99_ms=0.40 plan=index rows=10

then a summary line (``hot_queries=... over_2ms=... seq_scans=...``). The run fails when a
statement scans one of the dataset's tables sequentially.

Usage: python bench/hot_queries.py [--customers N] [--invoices-per-customer 10] [--repeat 200]
       [--keep | --reuse]

``--customers`` defaults to TOLLGATE_BENCH_CUSTOMERS or 1,000,000. The database comes from
DATABASE_URL (default ``postgres://postgres@127.0.0.1:5432/tg_dataset_bench``); it is dropped
and created again (its name must contain "bench"), and dropped at the end unless ``--keep``.
``--reuse`` measures a database kept by an earlier run, as it is.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _procs
import dataset

SLOW_MS = 2.0
WRITES = ("INSERT", "UPDATE", "DELETE", "SAVEPOINT", "RELEASE", "ROLLBACK", "SET", "BEGIN")


@dataclass(frozen=True)
class Statement:
    case: str
    sql: str
    params: Any


@dataclass(frozen=True)
class Measured:
    name: str
    p50_ms: float
    p99_ms: float
    seq_scans: tuple[str, ...]
    rows: int


# --- Capturing the statements of the real code paths ---------------------------------------------------
@contextmanager
def captured(case: str, into: list[Statement]) -> Iterator[None]:
    from django.db import connection

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        into.append(Statement(case, sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield


def reads(statements: list[Statement]) -> list[Statement]:
    """The SELECTs, each distinct statement of a case once (writes are not hot queries here)."""
    seen: set[tuple[str, str]] = set()
    found = []
    for statement in statements:
        text = statement.sql.lstrip().upper()
        if text.startswith(WRITES) or not text.startswith(("SELECT", "WITH")):
            continue
        key = (statement.case, statement.sql)
        if key not in seen:
            seen.add(key)
            found.append(statement)
    return found


@dataclass(frozen=True)
class Sample:
    """The records the cases ask about: a customer in good standing and one past due."""

    customer: Any
    past_due: Any
    invoice: Any
    payment: Any
    card_last4: str


def sample() -> Sample:
    from tollgate.billing.models import Customer, Invoice, PaymentAttempt, PaymentMethod

    middle = Customer.objects.order_by().values_list("pk", flat=True).last() or 1
    customer = Customer.objects.select_related("user").filter(pk__gte=middle // 2).order_by("pk")
    good = customer.filter(subscriptions__status="active").first()
    past_due = Customer.objects.filter(subscriptions__status="past_due").order_by("pk").first()
    if good is None or past_due is None:
        raise SystemExit("the dataset has no active or no past-due customer: too small")
    invoice = Invoice.objects.filter(customer=good).order_by("-id").first()
    payment = PaymentAttempt.objects.filter(invoice__customer=good).order_by("-id").first()
    card = PaymentMethod.objects.get(customer=good, is_default=True)
    return Sample(good, past_due, invoice, payment, card.last4)


def cases(found: Sample) -> dict[str, Callable[[], object]]:
    """Each hot path by name, as a callable that runs it for real."""
    from django.http import QueryDict
    from django.test import Client

    from tollgate.billing import reports
    from tollgate.billing.clock.run import billing_run
    from tollgate.billing.reconciliation import reconciliation_run
    from tollgate.core import clock
    from tollgate.integrations.keys import api_key_create
    from tollgate.web.staff_tables import table_page
    from tollgate.web.staff_views import LOOKUP_SORTS

    customer, past_due = found.customer, found.past_due
    page = Client()
    page.force_login(customer.user)
    api = Client(
        headers={
            "Authorization": "Bearer "
            + api_key_create(
                name="hot queries",
                scopes=["billing:read", "entitlements:read", "usage:write"],
            ).secret
        }
    )

    def get(client: Client, path: str) -> None:
        response = client.get(path)
        if response.status_code != 200:
            raise SystemExit(f"GET {path} answered {response.status_code}")

    def post(client: Client, path: str, body: dict[str, Any]) -> None:
        response = client.post(path, body, content_type="application/json")
        if response.status_code != 200:
            raise SystemExit(f"POST {path} answered {response.status_code}: {response.content!r}")

    def lookup(query: str) -> Callable[[], object]:
        return lambda: (
            table_page(
                reports.customers_matching(query=query),
                params=QueryDict(),
                sorts=LOOKUP_SORTS,
                default="created",
            ).rows
        )

    def api_list(path: str) -> None:
        cursor = api.get(path).json()["next_cursor"]
        if cursor:  # the second page, after the first one's last item
            get(api, f"{path}{'&' if '?' in path else '?'}starting_after={cursor}")

    now = clock.now()
    # What staff type: most of an address (a short prefix of a common name matches thousands).
    email_prefix = customer.email.split("@")[0]
    name_part = customer.name.split()[-1][1:5]
    return {
        "billing_page": lambda: get(page, "/billing/"),
        "pricing_page": lambda: get(page, "/pricing/"),
        "receipt_page": lambda: get(page, f"/billing/invoices/{found.invoice.public_id}/"),
        "api_entitlement_check": lambda: post(
            api, "/api/v1/entitlements/check", {"customer": customer.public_id, "feature": "sso"}
        ),
        "api_customers": lambda: api_list("/api/v1/customers?limit=20"),
        "api_subscriptions": lambda: api_list("/api/v1/subscriptions?limit=20"),
        "api_invoices": lambda: api_list("/api/v1/invoices?limit=20"),
        "api_customer_invoices": lambda: api_list(
            f"/api/v1/invoices?customer={customer.public_id}&limit=2"
        ),
        "api_usage": lambda: post(
            api,
            "/api/v1/usage",
            {
                "events": [
                    {
                        "id": f"hot-{time.time_ns()}",
                        "customer": customer.public_id,
                        "metric": "api_calls_per_month",
                        "quantity": 1,
                        "timestamp": now.isoformat(),
                    }
                ]
            },
        ),
        # The clock has caught up at the dataset's time: this is the periodic run finding what is
        # due (renewals, trial ends, expiries, dunning retries, stale payments).
        "billing_clock": lambda: billing_run(until=now),
        "reconciliation": lambda: reconciliation_run(since=now - dt.timedelta(hours=1), until=now),
        "staff_lookup_email": lookup(email_prefix),
        "staff_lookup_name": lookup(name_part),
        "staff_lookup_customer_id": lookup(customer.public_id),
        "staff_lookup_account_id": lookup(customer.user.public_id),
        "staff_lookup_invoice_id": lookup(found.invoice.public_id),
        "staff_lookup_payment_id": lookup(found.payment.public_id),
        "staff_lookup_invoice_number": lookup(found.invoice.number or ""),
        "staff_lookup_card_last4": lookup(found.card_last4),
        "staff_lookup_gateway_id": lookup(customer.gateway_reference),
        "staff_lookup_past_due_email": lookup(past_due.email.split("@")[0].upper()),
    }


# --- Measuring ------------------------------------------------------------------------------------------
def seq_scans(plan: dict[str, Any], large: set[str]) -> list[str]:
    """The dataset tables that ``plan`` (EXPLAIN's JSON) reads with a sequential scan."""
    found = []
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") in large:
        found.append(str(plan["Relation Name"]))
    for child in plan.get("Plans", ()):
        found += seq_scans(child, large)
    return found


def explain(cursor: Any, statement: Statement) -> dict[str, Any]:
    cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement.sql, statement.params)
    document = cursor.fetchone()[0]
    return dict((json.loads(document) if isinstance(document, str) else document)[0])


def main_table(statement: Statement) -> str:
    text = statement.sql
    start = text.find(' FROM "')
    return text[start + 7 : text.find('"', start + 7)] if start >= 0 else "other"


def measure(statements: list[Statement], repeat: int) -> list[Measured]:
    from django.db import connection

    large = set(dataset.TABLES)
    results = []
    numbers: dict[str, int] = {}
    with connection.cursor() as cursor:
        for statement in statements:
            numbers[statement.case] = numbers.get(statement.case, 0) + 1
            name = f"{statement.case}.{numbers[statement.case]}.{main_table(statement)}"
            plan = explain(cursor, statement)
            times = []
            for _ in range(repeat + 5):
                started = time.perf_counter()
                cursor.execute(statement.sql, statement.params)
                cursor.fetchall()
                times.append((time.perf_counter() - started) * 1000)
            times = sorted(times[5:])
            results.append(
                Measured(
                    name=name,
                    p50_ms=statistics.median(times),
                    p99_ms=times[min(len(times) - 1, int(len(times) * 0.99))],
                    seq_scans=tuple(seq_scans(plan["Plan"], large)),
                    rows=int(plan["Plan"].get("Actual Rows", 0)),
                )
            )
    return results


def run_cases(found: Sample) -> list[Statement]:
    statements: list[Statement] = []
    for case, run in cases(found).items():
        run()  # once to warm the caches, as a page in service is
        with captured(case, statements):
            run()
    return reads(statements)


def main() -> int:
    args, shape = dataset.parse_shape()
    repeat = int(os.environ.get("TOLLGATE_BENCH_REPEAT", "200"))
    database_url = _procs.bench_database_url(dataset.DEFAULT_DATABASE_URL, "hot queries")
    dataset.setup_django(database_url)
    try:
        if not args.reuse:
            counts, seconds = dataset.generate(database_url, shape)
            rows = " ".join(f"{t.split('_', 1)[1]}={n}" for t, n in counts.rows.items())
            print(
                f"dataset=generated customers={shape.customers} seconds={seconds:.0f} "
                f"size={dataset.database_size(database_url).replace(' ', '')} {rows}",
                flush=True,
            )
        results = measure(run_cases(sample()), repeat)
    finally:
        if not (args.keep or args.reuse):
            from django.db import connections

            for connection in connections.all():
                connection.close()
            _procs.database_drop(database_url)
    for result in results:
        plan = f"seq_scan:{','.join(result.seq_scans)}" if result.seq_scans else "index"
        print(
            f"query={result.name} p50_ms={result.p50_ms:.3f} p99_ms={result.p99_ms:.3f} "
            f"plan={plan} rows={result.rows}"
        )
    slow = [r.name for r in results if r.p99_ms > SLOW_MS]
    scans = [r.name for r in results if r.seq_scans]
    print(
        f"hot_queries={len(results)} over_2ms={len(slow)} seq_scans={len(scans)} "
        f"status={'ok' if not scans else 'seq_scan'}"
    )
    for name in scans:
        print(f"sequential scan of a dataset table: {name}", file=sys.stderr)
    return 1 if scans else 0


if __name__ == "__main__":
    raise SystemExit(main())
