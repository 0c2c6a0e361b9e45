"""How fast does the billing clock renew subscriptions on PostgreSQL, with 1 and with 2 workers?

For each worker count, on a fresh database (created here and dropped afterwards):

1. migrate and load the demo catalog;
2. build N active subscriptions whose period ended a day ago, in the exact state the real services
   leave them in: the first one through the real services (sign-up, card saved on the sandbox's
   form, subscription started and its first invoice paid), the others as bulk-inserted copies of its
   rows (customer, sandbox customer and card, payment method, subscription, paid first invoice with
   its line, succeeded payment and sandbox charge, ledger postings). The copies are checked field by
   field against the original and the ledger is checked before the run;
3. start the worker processes (``billing_run``, the function the periodic task calls, with its
   default batch size), wait until each has loaded Django, release them at once and time them until
   the last one is done (a time cap stops them);
4. verify: every subscription renewed once, every renewal invoice paid once, no duplicate invoice,
   payment or gateway charge for any subscription period, nothing left pending, the ledger balanced.

One result line per worker count, for example::

    renewals_per_s=1234.5 workers=2 duplicates=0 renewals=10000 seconds=8.10 ledger=balanced ...

``queries_per_renewal`` counts every SQL statement the workers sent (a database execute wrapper);
``db_ms_per_renewal`` is the time the workers spent waiting on them, summed over the workers, and
``python_ms_per_renewal`` the rest of their busy time.

The workers run the embedded profile with their own data directory: mail goes to the outbox (in
PostgreSQL, as in production) and the after-commit delivery tasks to a private SQLite queue that
nothing consumes. Every process started here is stopped by the id of the process group it was
started in, also when the run fails, times out or is interrupted.

The database comes from DATABASE_URL (default postgres://postgres@127.0.0.1:5432/tollgate_bench).
Because it is dropped and recreated, its name must contain "bench"; the test suite's ``test``
database is refused.

Usage: python bench/renewals.py [--subscriptions 10000] [--workers 1,2] [--time-cap 600]
       [--batch-size N] [--profile DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import pstats
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _procs
from _procs import database_drop, database_recreate, stop, stopped_on_exit

ROOT = _procs.ROOT
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tollgate_bench"
READY_TIMEOUT_SECONDS = 60.0
BULK_BATCH = 2000


# --- Configuration ---------------------------------------------------------------------------------
def bench_database_url() -> str:
    return _procs.bench_database_url(DEFAULT_DATABASE_URL, "renewal")


def child_environment(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "TOLLGATE_ENV": "development",
        "DEBUG": "false",  # DEBUG keeps every query in memory: not what production does
        "DATABASE_URL": database_url,
        "TOLLGATE_DATA_DIR": str(data_dir),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "LOG_LEVEL": "WARNING",
        "TOLLGATE_MAIL_ECHO_LINKS": "false",
        "TOLLGATE_GATEWAY": "sandbox",
        "TOLLGATE_INVOICE_NUMBERING": "customer",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in ("REDIS_URL", "SENTRY_DSN", "PROMETHEUS_MULTIPROC_DIR", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    return env


def django_release() -> None:
    """Close this process's connections (and their pool) so the database can be dropped."""
    from django.db import connections

    for connection in connections.all():
        connection.close()
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()


# --- Processes -------------------------------------------------------------------------------------
def read_line(process: subprocess.Popen[str], deadline: float) -> str:
    """The next line the worker prints, or "" if it exits or the deadline passes first."""
    assert process.stdout is not None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return ""
        ready, _, _ = select.select([process.stdout], [], [], min(remaining, 1.0))
        if ready:
            return process.stdout.readline()
        if process.poll() is not None:
            return process.stdout.readline()


# --- Worker (a child process) ----------------------------------------------------------------------
class QueryMeter:
    """A database execute wrapper: counts statements and the time spent waiting for them."""

    def __init__(self) -> None:
        self.queries = 0
        self.seconds = 0.0

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.queries += 1


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux); 0 if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_main(args: argparse.Namespace) -> int:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tollgate.config.settings")
    django.setup()
    from django.db import connection

    from tollgate.billing.clock import BATCH_SIZE, billing_run

    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = int(cursor.fetchone()[0])
    meter = QueryMeter()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    profiler = cProfile.Profile() if args.profile else None
    started = time.time()
    cpu_started = time.process_time()
    backend_started = process_cpu_seconds(backend)
    with connection.execute_wrapper(meter):
        if profiler is not None:
            profiler.enable()
        result = billing_run(batch_size=args.batch_size or BATCH_SIZE)
        if profiler is not None:
            profiler.disable()
    finished = time.time()
    if profiler is not None:
        profiler.dump_stats(str(Path(args.profile) / f"worker-{os.getpid()}.prof"))
    report = {
        "started": started,
        "finished": finished,
        "cpu_seconds": time.process_time() - cpu_started,
        "backend_cpu_seconds": process_cpu_seconds(backend) - backend_started,
        "renewed": result.renewed,
        "charged": result.charged,
        "failed": result.failed,
        "queries": meter.queries,
        "db_seconds": meter.seconds,
    }
    print("result " + json.dumps(report), flush=True)
    return 0


# --- Data ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Seeded:
    subscriptions: int
    anchor: dt.datetime


def seed(count: int) -> Seeded:
    """``count`` active monthly subscriptions whose first period ended a day ago: one built through
    the real services, the rest bulk copies of its rows (checked against it)."""
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from tollgate.accounts.models import User
    from tollgate.billing import services
    from tollgate.billing.gateways.sandbox.adapter import SandboxGateway, _fingerprint
    from tollgate.billing.gateways.sandbox.models import (
        SandboxCard,
        SandboxCharge,
        SandboxCustomer,
    )
    from tollgate.billing.models import (
        Customer,
        Invoice,
        InvoiceLine,
        LedgerEntry,
        LedgerTransaction,
        PaymentAttempt,
        PaymentMethod,
        Subscription,
    )
    from tollgate.catalog.models import Price
    from tollgate.core import clock
    from tollgate.organisations.models import Membership, Organisation, Role

    anchor = (clock.now() - dt.timedelta(days=32)).replace(microsecond=0)
    price = Price.objects.get(plan__code="pro", interval="month", active=True)
    with clock.frozen(anchor):
        user = User.objects.create_user(email="payer0@bench.invalid", password=None)
        customer = services.customer_get_or_create(user=user)
        session = services.payment_method_setup_start(
            customer=customer, return_url="https://bench.invalid/billing/"
        )
        SandboxGateway().setup_submit(
            session_reference=session.reference,
            number="4242424242424242",
            exp_month=12,
            exp_year=anchor.year + 5,
        )
        services.payment_method_attach(customer=customer, setup_reference=session.reference)
        services.subscription_start(
            customer=customer, price=price, trial=False, idempotency_key="bench-checkout"
        )

    model = _template(Customer.objects.get(pk=customer.pk))  # as the services left it
    password = make_password(None)
    with transaction.atomic():
        users = User.objects.bulk_create(
            [
                User(email=f"payer{index}@bench.invalid", password=password, date_joined=anchor)
                for index in range(1, count)
            ],
            batch_size=BULK_BATCH,
        )
        # Each customer with its personal organisation, its account the owner (as the services
        # leave it).
        organisations = Organisation.objects.bulk_create(
            [Organisation(personal=True, created_at=anchor) for _ in users],
            batch_size=BULK_BATCH,
        )
        Membership.objects.bulk_create(
            [
                Membership(organisation=o, user=u, role=Role.OWNER, created_at=anchor)
                for o, u in zip(organisations, users, strict=True)
            ],
            batch_size=BULK_BATCH,
        )
        customers = [
            Customer(
                user=u,
                organisation=o,
                email=u.email,
                next_invoice_sequence=model.customer.next_invoice_sequence,
                gateway=model.customer.gateway,
                created_at=anchor,
            )
            for o, u in zip(organisations, users, strict=True)
        ]
        sandbox_customers = [
            SandboxCustomer(customer_id=c.public_id, email=c.email, created_at=anchor)
            for c in customers
        ]
        for copy, sandbox_customer in zip(customers, sandbox_customers, strict=True):
            copy.gateway_reference = sandbox_customer.reference
        SandboxCustomer.objects.bulk_create(sandbox_customers, batch_size=BULK_BATCH)
        Customer.objects.bulk_create(customers, batch_size=BULK_BATCH)
        cards = SandboxCard.objects.bulk_create(
            [_clone(model.card, customer_reference=c.gateway_reference) for c in customers],
            batch_size=BULK_BATCH,
        )
        methods = PaymentMethod.objects.bulk_create(
            [
                _clone(model.method, customer=c, gateway_token=card.token)
                for c, card in zip(customers, cards, strict=True)
            ],
            batch_size=BULK_BATCH,
        )
        subscriptions = Subscription.objects.bulk_create(
            [_clone(model.subscription, customer=c) for c in customers], batch_size=BULK_BATCH
        )
        suffix = model.invoice.number.rsplit("-", 1)[1]
        invoices = Invoice.objects.bulk_create(
            [
                _clone(
                    model.invoice,
                    customer=c,
                    subscription=s,
                    number=f"{c.invoice_prefix}-{suffix}",
                )
                for c, s in zip(customers, subscriptions, strict=True)
            ],
            batch_size=BULK_BATCH,
        )
        InvoiceLine.objects.bulk_create(
            [_clone(line, invoice=i) for i in invoices for line in model.lines],
            batch_size=BULK_BATCH,
        )
        keys = [f"{i.public_id}-attempt-{model.payment.attempt_number}" for i in invoices]
        charges = SandboxCharge.objects.bulk_create(
            [
                _clone(
                    model.charge,
                    idempotency_key=key,
                    customer_reference=c.gateway_reference,
                    card_token=m.gateway_token,
                    request_fingerprint=_fingerprint(
                        {
                            "customer": c.gateway_reference,
                            "card": m.gateway_token,
                            "amount": model.charge.amount,
                            "currency": model.charge.currency,
                            "off_session": model.charge.off_session,
                        }
                    ),
                )
                for key, c, m in zip(keys, customers, methods, strict=True)
            ],
            batch_size=BULK_BATCH,
        )
        payments = PaymentAttempt.objects.bulk_create(
            [
                _clone(
                    model.payment,
                    invoice=i,
                    payment_method=m,
                    idempotency_key=key,
                    gateway_reference=charge.reference,
                )
                for i, m, key, charge in zip(invoices, methods, keys, charges, strict=True)
            ],
            batch_size=BULK_BATCH,
        )
        postings = LedgerTransaction.objects.bulk_create(
            [
                _clone(
                    posting,
                    customer=c,
                    invoice=i,
                    payment=p if posting.payment_id is not None else None,
                )
                for c, i, p in zip(customers, invoices, payments, strict=True)
                for posting in model.postings
            ],
            batch_size=BULK_BATCH,
        )
        per_copy = len(model.postings)
        LedgerEntry.objects.bulk_create(
            [
                _clone(entry, transaction=postings[index * per_copy + position])
                for index in range(len(customers))
                for position, posting in enumerate(model.postings)
                for entry in model.entries[posting.pk]
            ],
            batch_size=BULK_BATCH,
        )
    copy = _template(Customer.objects.get(pk=customers[0].pk)) if customers else model
    if _shape(copy) != _shape(model):
        raise SystemExit(
            "the bulk copies differ from the subscription built by the services:\n"
            f"{_shape(model)}\n{_shape(copy)}"
        )
    return Seeded(subscriptions=count, anchor=anchor)


@dataclass
class _Template:
    customer: Any
    card: Any
    method: Any
    subscription: Any
    invoice: Any
    lines: list[Any]
    payment: Any
    charge: Any
    postings: list[Any]
    entries: dict[int, list[Any]]


def _template(customer: Any) -> _Template:
    """Every row the services wrote for one customer's subscription, its first invoice and payment."""
    from tollgate.billing.gateways.sandbox.models import SandboxCard, SandboxCharge
    from tollgate.billing.models import (
        Invoice,
        LedgerEntry,
        LedgerTransaction,
        PaymentAttempt,
        PaymentMethod,
        Subscription,
    )

    method = PaymentMethod.objects.get(customer=customer)
    invoice = Invoice.objects.get(customer=customer)
    payment = PaymentAttempt.objects.get(invoice=invoice)
    postings = list(LedgerTransaction.objects.filter(invoice=invoice).order_by("pk"))
    return _Template(
        customer=customer,
        card=SandboxCard.objects.get(token=method.gateway_token),
        method=method,
        subscription=Subscription.objects.get(customer=customer),
        invoice=invoice,
        lines=list(invoice.lines.order_by("pk")),
        payment=payment,
        charge=SandboxCharge.objects.get(idempotency_key=payment.idempotency_key),
        postings=postings,
        entries={
            posting.pk: list(LedgerEntry.objects.filter(transaction=posting).order_by("pk"))
            for posting in postings
        },
    )


# Fields that identify a row rather than describe its state; the copies get their own.
_IDENTITY = {
    "id",
    "public_id",
    "reference",
    "token",
    "invoice_prefix",
    "number",
    "idempotency_key",
    "gateway_reference",
    "gateway_token",
    "customer_reference",
    "card_token",
    "customer",
    "user",
    "organisation",
    "subscription",
    "invoice",
    "payment",
    "payment_method",
    "transaction",
}


def _clone(row: Any, **changes: Any) -> Any:
    """A new unsaved row with ``row``'s state and the given identity."""
    values = {
        field.attname: getattr(row, field.attname)
        for field in row._meta.concrete_fields
        if field.name not in _IDENTITY
    }
    return type(row)(**(values | changes))


def _state(row: Any) -> dict[str, Any]:
    return {
        field.name: getattr(row, field.attname)
        for field in row._meta.concrete_fields
        if field.name not in _IDENTITY and field.name not in ("request_fingerprint", "email")
    }


def _shape(t: _Template) -> dict[str, Any]:
    """What must be equal between the original and a copy (its rows' state, and how they refer to
    one another)."""
    return {
        "customer": _state(t.customer),
        "card": _state(t.card),
        "method": _state(t.method),
        "subscription": _state(t.subscription),
        "invoice": _state(t.invoice),
        "number_suffix": t.invoice.number.rsplit("-", 1)[1],
        "lines": [_state(line) for line in t.lines],
        "payment": _state(t.payment),
        "charge": _state(t.charge),
        "postings": [_state(p) for p in t.postings],
        "entries": [[_state(e) for e in t.entries[p.pk]] for p in t.postings],
        "links": {
            "card_of_customer": t.card.customer_reference == t.customer.gateway_reference,
            "method_is_card": t.method.gateway_token == t.card.token,
            "key": t.payment.idempotency_key == f"{t.invoice.public_id}-attempt-1",
            "charge_key": t.charge.idempotency_key == t.payment.idempotency_key,
            "charge_ref": t.charge.reference == t.payment.gateway_reference,
            "charge_card": t.charge.card_token == t.method.gateway_token,
            "prefix": t.invoice.number.startswith(t.customer.invoice_prefix + "-"),
            "postings_payment": [p.payment_id == t.payment.pk for p in t.postings],
            "owner": t.customer.organisation.memberships.filter(
                user=t.customer.user, role="owner"
            ).exists(),
        },
    }


# --- Verification ----------------------------------------------------------------------------------
@dataclass
class Verdict:
    renewed_invoices: int
    paid: int
    duplicates: int
    unsettled: int
    ledger_ok: bool
    ledger_problems: int


def verify() -> Verdict:
    """Count what the run did, and every duplicate for a subscription period."""
    from django.db import connection

    from tollgate.billing.integrity import ledger_check
    from tollgate.billing.models import Invoice, PaymentAttempt

    cycle = Invoice.objects.filter(billing_reason=Invoice.BillingReason.SUBSCRIPTION_CYCLE)
    with connection.cursor() as cursor:
        # Invoices for one subscription period beyond the first (void ones included: any is too many).
        cursor.execute(
            "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM billing_invoice "
            "WHERE subscription_id IS NOT NULL GROUP BY subscription_id, period_start) AS t"
        )
        invoice_duplicates = int(cursor.fetchone()[0])
        # Succeeded payments, and succeeded gateway charges, per subscription period beyond one.
        cursor.execute(
            "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM billing_paymentattempt p "
            "JOIN billing_invoice i ON i.id = p.invoice_id WHERE p.status = 'succeeded' "
            "GROUP BY i.subscription_id, i.period_start) AS t"
        )
        payment_duplicates = int(cursor.fetchone()[0])
        cursor.execute(
            "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM billing_sandbox_charge c "
            "JOIN billing_paymentattempt p ON p.idempotency_key = c.idempotency_key "
            "JOIN billing_invoice i ON i.id = p.invoice_id WHERE c.status = 'succeeded' "
            "GROUP BY i.subscription_id, i.period_start) AS t"
        )
        charge_duplicates = int(cursor.fetchone()[0])
        cursor.execute(
            "SELECT COUNT(*) FROM billing_sandbox_charge c WHERE NOT EXISTS (SELECT 1 FROM "
            "billing_paymentattempt p WHERE p.idempotency_key = c.idempotency_key)"
        )
        orphan_charges = int(cursor.fetchone()[0])
    report = ledger_check()
    return Verdict(
        renewed_invoices=cycle.count(),
        paid=cycle.filter(status="paid").count(),
        duplicates=invoice_duplicates + payment_duplicates + charge_duplicates + orphan_charges,
        unsettled=PaymentAttempt.objects.filter(status__in=["pending", "unknown"]).count(),
        ledger_ok=report.ok,
        ledger_problems=len(report.problems),
    )


# --- One measured run ------------------------------------------------------------------------------
@dataclass
class RunResult:
    line: str
    ok: bool


def measure(workers: int, args: argparse.Namespace, database_url: str, data_dir: Path) -> RunResult:
    from django.core.management import call_command
    from django.db import connection

    from tollgate.billing.integrity import ledger_check

    django_release()
    database_recreate(database_url)
    call_command("migrate", verbosity=0, interactive=False)
    call_command("catalog_load", "demo", verbosity=0, stdout=io.StringIO())
    seeding = time.perf_counter()
    seeded = seed(args.subscriptions)
    if not ledger_check().ok:
        raise SystemExit("the seeded data does not balance; refusing to measure")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # planner statistics, as a database in service has them
    print(
        f"seeded {seeded.subscriptions} due subscriptions in {time.perf_counter() - seeding:.1f} s",
        flush=True,
    )
    django_release()  # the workers get the server's whole attention

    env = child_environment(database_url, data_dir)
    command = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    if args.profile:
        command += ["--profile", args.profile]
    processes = []
    log_path = data_dir / f"workers-{workers}.log"
    with log_path.open("w") as log:
        for _ in range(workers):
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
            _procs.started(process)
            processes.append(process)
    reports: list[dict[str, Any]] = []
    timed_out = False
    try:
        ready_by = time.monotonic() + READY_TIMEOUT_SECONDS
        for process in processes:
            if read_line(process, ready_by).strip() != "ready":
                raise SystemExit("a worker did not start")
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        done_by = time.monotonic() + args.time_cap
        for process in processes:
            line = read_line(process, done_by)
            if not line.startswith("result "):
                timed_out = time.monotonic() >= done_by
                break
            reports.append(json.loads(line.removeprefix("result ")))
    finally:
        for process in processes:
            stop(process)

    verdict = verify()
    renewed = sum(r["renewed"] for r in reports)
    failed = sum(r["failed"] for r in reports)
    complete = len(reports) == workers and not timed_out
    seconds = (
        max(r["finished"] for r in reports) - min(r["started"] for r in reports)
        if complete
        else float(args.time_cap)
    )
    rate = verdict.paid / seconds if seconds else 0.0
    queries = sum(r["queries"] for r in reports)
    busy = sum(r["finished"] - r["started"] for r in reports)
    db_seconds = sum(r["db_seconds"] for r in reports)
    per = max(verdict.paid, 1)
    ok = (
        complete
        and failed == 0
        and verdict.duplicates == 0
        and verdict.ledger_ok
        and verdict.unsettled == 0
        and verdict.paid == verdict.renewed_invoices == seeded.subscriptions == renewed
    )
    line = (
        f"renewals_per_s={rate:.1f} workers={workers} duplicates={verdict.duplicates}"
        f" renewals={verdict.paid} of={seeded.subscriptions} seconds={seconds:.2f}"
        f" ledger={'balanced' if verdict.ledger_ok else f'{verdict.ledger_problems}_problems'}"
        f" unsettled={verdict.unsettled} failed={failed}"
        f" queries_per_renewal={queries / per:.1f}"
        f" db_ms_per_renewal={db_seconds * 1000 / per:.2f}"
        f" python_ms_per_renewal={(busy - db_seconds) * 1000 / per:.2f}"
        f" worker_cpu_ms_per_renewal={sum(r['cpu_seconds'] for r in reports) * 1000 / per:.2f}"
        f" postgres_cpu_ms_per_renewal="
        f"{sum(r['backend_cpu_seconds'] for r in reports) * 1000 / per:.2f}"
        f" status={'ok' if ok else ('timed_out' if timed_out else 'incomplete')}"
    )
    if not ok:
        sys.stderr.write(f"worker log (end):\n{log_path.read_text()[-3000:]}\n")
    django_release()
    return RunResult(line=line, ok=ok)


def print_profile(directory: str, limit: int = 25) -> None:
    files = sorted(str(path) for path in Path(directory).glob("worker-*.prof"))
    if not files:
        return
    stats = pstats.Stats(*files, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(limit)
    stats.sort_stats("tottime").print_stats(limit)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--workers", default="1,2", help="worker counts to measure, e.g. 1,2")
    parser.add_argument("--time-cap", type=float, default=600.0, help="seconds per measured run")
    parser.add_argument("--batch-size", type=int, default=0, help="default: the clock's own")
    parser.add_argument("--profile", default="", help="directory for cProfile output per worker")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker_main(args)
    counts = [int(part) for part in args.workers.split(",") if part.strip()]
    if args.subscriptions < 1 or not counts or min(counts) < 1 or not 0 < args.time_cap <= 1200:
        parser.error("need --subscriptions >= 1, worker counts >= 1 and 0 < --time-cap <= 1200")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)

    database_url = bench_database_url()
    data_dir = Path(tempfile.mkdtemp(prefix="tollgate-bench-renewals-"))
    # This process builds and checks the data with the same settings the workers use.
    os.environ.update(child_environment(database_url, data_dir))
    os.environ["DJANGO_SETTINGS_MODULE"] = "tollgate.config.settings"
    try:
        database_recreate(database_url)
    except Exception as exc:  # no server, no rights: say so rather than a traceback
        print(f"note: cannot create the benchmark database ({type(exc).__name__}: {exc})")
        shutil.rmtree(data_dir, ignore_errors=True)
        return 1
    import django

    django.setup()
    results = []
    try:
        with stopped_on_exit():
            for workers in counts:
                result = measure(workers, args, database_url, data_dir)
                print(result.line, flush=True)
                results.append(result)
    finally:
        django_release()
        database_drop(database_url)
        shutil.rmtree(data_dir, ignore_errors=True)
    if args.profile:
        print_profile(args.profile)
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
