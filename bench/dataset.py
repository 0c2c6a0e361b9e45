"""A large billing dataset on PostgreSQL, loaded with COPY: accounts, customers and their cards,
subscriptions, invoices with their lines, payment attempts and the balanced ledger postings.

Every row is one the services could have written: valid statuses and transitions' end states,
gap-free invoice numbers per customer (unique), totals equal to their lines, a paid invoice paid in
full by one captured attempt (sometimes after a declined one), past-due customers with an open
invoice and a retry scheduled, canceled subscriptions ended, and for every finalized invoice and
captured payment the ledger transaction the services post (each balanced). The check constraints
are checked as the rows arrive; the unique constraints when their indexes are rebuilt.

The clock has caught up at the dataset's ``now`` (the time it is generated): no period has ended
unrenewed and no retry is overdue, as in a database in service.

Run it on its own (``python bench/dataset.py --customers 10000``) to build the database named by
DATABASE_URL (default ``postgres://postgres@127.0.0.1:5432/tg_dataset_bench``; it is dropped and
created again, so its name must contain "bench"), or through ``bench/hot_queries.py``, which
measures the hot queries against it. ``--keep`` leaves it in place (``dropdb`` it when done).

At full size (``--customers 1000000``, 10 invoices each) the load drops the loaded tables'
secondary indexes and unique constraints, copies with foreign-key triggers off (the rows are
built consistent) through one connection per table, then rebuilds them. Below
``FAST_LOAD_FROM`` customers everything is checked as it is copied, in foreign-key order.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from _dataset_rows import GATEWAY, TABLES, Counts, Generator, PriceRow, Shape, ts

__all__ = ["TABLES", "Counts", "Shape", "ts"]

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tg_dataset_bench"
FAST_LOAD_FROM = 100_000


# --- Loading -----------------------------------------------------------------------------------------
def prices_for_sale(cursor: Any) -> list[PriceRow]:
    cursor.execute(
        "SELECT p.id, p.amount, p.currency, pl.name FROM catalog_price p "
        "JOIN catalog_plan pl ON pl.id = p.plan_id "
        "WHERE p.active AND p.interval = 'month' AND p.interval_count = 1 ORDER BY p.id"
    )
    found = [
        PriceRow(pid, amount, currency, f"{name} (monthly)")
        for pid, amount, currency, name in cursor
    ]
    if not found:
        raise SystemExit("no monthly price in the catalog: load one first (catalog_load demo)")
    return found


def _copy_sql(table: str) -> Any:
    from psycopg import sql

    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, TABLES[table]))
    )


def load_checked(cursor: Any, shape: Shape) -> Counts:
    """Load a small dataset through ``cursor`` (a psycopg cursor, in the caller's transaction),
    table by table in foreign-key order, with every constraint and trigger checked."""
    generator = Generator(shape, prices_for_sale(cursor))
    buffered: dict[str, list[str]] = {table: [] for table in TABLES}
    for rows in generator.chunks():
        for table, lines in rows.items():
            buffered[table].extend(lines)
    counts = Counts()
    for table, lines in buffered.items():
        with cursor.copy(_copy_sql(table)) as copy:
            copy.write("\n".join(lines) + "\n" if lines else "")
        counts.rows[table] = len(lines)
    _sequences_set(cursor)
    return counts


def _sequences_set(cursor: Any) -> None:
    from psycopg import sql

    for table in TABLES:
        cursor.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence({}, 'id'), "
                "GREATEST((SELECT max(id) FROM {}), 1))"
            ).format(sql.Literal(table), sql.Identifier(table))
        )


@dataclass(frozen=True)
class Rebuild:
    """A secondary index or unique constraint of a loaded table, dropped before the load."""

    drop: Any
    create: Any


def _secondary_indexes(cursor: Any) -> list[Rebuild]:
    from psycopg import sql

    tables = list(TABLES)
    cursor.execute(
        "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) "
        "FROM pg_constraint c WHERE c.contype = 'u' AND c.conrelid::regclass::text = ANY(%s)",
        [tables],
    )
    found = [
        Rebuild(
            drop=sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(name)
            ),
            # The server's own rendering of a constraint it holds.
            create=sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(
                sql.Identifier(table), sql.Identifier(name)
            )
            + sql.SQL(definition),
        )
        for table, name, definition in cursor.fetchall()
    ]
    cursor.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid::regclass::text = ANY(%s) AND NOT EXISTS ("
        "SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid "
        "AND c.contype IN ('p', 'u', 'x'))",
        [tables],
    )
    found += [
        Rebuild(
            drop=sql.SQL("DROP INDEX {}").format(sql.Identifier(name)),
            create=sql.SQL(definition),
        )
        for name, definition in cursor.fetchall()
    ]
    return found


def load_fast(database_url: str, shape: Shape, progress: Callable[[int], None]) -> Counts:
    """Load a large dataset: secondary indexes and unique constraints dropped, one COPY per table
    on its own connection with foreign-key triggers off, then the indexes rebuilt two at a time."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as admin, admin.cursor() as cursor:
        generator = Generator(shape, prices_for_sale(cursor))
        rebuilds = _secondary_indexes(cursor)
        for rebuild in rebuilds:
            cursor.execute(rebuild.drop)
    counts = Counts()
    with ExitStack() as stack:
        copies = {}
        for table in TABLES:
            connection = stack.enter_context(psycopg.connect(database_url))
            connection.execute("SET session_replication_role = replica")
            connection.execute("SET synchronous_commit = off")
            copies[table] = (
                connection,
                stack.enter_context(connection.cursor().copy(_copy_sql(table))),
            )
        done = 0
        for rows in generator.chunks():
            for table, lines in rows.items():
                if lines:
                    copies[table][1].write("\n".join(lines) + "\n")
                    counts.rows[table] += len(lines)
            done += len(rows["billing_customer"])
            progress(done)
    # Leaving the stack ended every COPY and committed every connection.
    print(file=sys.stderr)
    started = time.perf_counter()
    _rebuild(database_url, rebuilds)
    with psycopg.connect(database_url, autocommit=True) as admin, admin.cursor() as cursor:
        _sequences_set(cursor)
        print("analyzing ...", file=sys.stderr, flush=True)
        for table in TABLES:
            cursor.execute(f"ANALYZE {table}")
    print(f"indexes rebuilt and analyzed in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return counts


def _rebuild(database_url: str, rebuilds: list[Rebuild]) -> None:
    import psycopg

    def build(rebuild: Rebuild) -> None:
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("SET maintenance_work_mem = '1GB'")
            connection.execute("SET max_parallel_maintenance_workers = 0")
            connection.execute(rebuild.create)

    print(f"rebuilding {len(rebuilds)} indexes ...", file=sys.stderr, flush=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(build, rebuilds))


class ProgressBar:
    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.started = total, label, time.perf_counter()

    def __call__(self, done: int) -> None:
        elapsed = time.perf_counter() - self.started
        share = done / self.total if self.total else 1.0
        bar = "#" * int(share * 30)
        left = elapsed / share - elapsed if share else 0.0
        print(
            f"\r{self.label} [{bar:<30}] {done:,}/{self.total:,} {share:5.1%} "
            f"{elapsed:5.0f} s, about {left:4.0f} s left",
            end="",
            file=sys.stderr,
            flush=True,
        )


def generate(database_url: str, shape: Shape) -> tuple[Counts, float]:
    """Drop and create the database, migrate it, load the demo catalog and the dataset. Needs
    Django set up on ``database_url``. Returns the row counts and the seconds it took."""
    import _procs
    import psycopg
    from django.core.management import call_command
    from django.db import connections

    started = time.perf_counter()
    for connection in connections.all():
        connection.close()
    _procs.database_recreate(database_url)
    call_command("migrate", verbosity=0, interactive=False)
    call_command("catalog_load", "demo", verbosity=0, stdout=io.StringIO())
    for connection in connections.all():
        connection.close()
    if shape.customers >= FAST_LOAD_FROM:
        counts = load_fast(database_url, shape, ProgressBar(shape.customers, "customers"))
    else:
        with psycopg.connect(database_url) as loading, loading.cursor() as cursor:
            counts = load_checked(cursor, shape)
            cursor.execute("ANALYZE")
    return counts, time.perf_counter() - started


def database_size(database_url: str) -> str:
    import psycopg

    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT pg_size_pretty(pg_database_size(current_database()))"
        ).fetchone()
    return str(row[0]) if row else "?"


def setup_django(database_url: str) -> None:
    os.environ.update(
        {
            "TOLLGATE_ENV": "development",
            "DEBUG": "false",
            "DATABASE_URL": database_url,
            "LOG_LEVEL": "WARNING",
            "TOLLGATE_GATEWAY": GATEWAY,
            "TOLLGATE_INVOICE_NUMBERING": "customer",
            "DJANGO_SETTINGS_MODULE": "tollgate.config.settings",
        }
    )
    for name in ("REDIS_URL", "SENTRY_DSN", "PROMETHEUS_MULTIPROC_DIR"):
        os.environ.pop(name, None)
    import django

    django.setup()


def parse_shape(argv: list[str] | None = None) -> tuple[argparse.Namespace, Shape]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--customers",
        type=int,
        default=int(os.environ.get("TOLLGATE_BENCH_CUSTOMERS", "1000000")),
        help="how many customers (env TOLLGATE_BENCH_CUSTOMERS; default 1,000,000)",
    )
    parser.add_argument("--invoices-per-customer", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="leave the database in place")
    parser.add_argument("--reuse", action="store_true", help="measure the database as it is")
    args = parser.parse_args(argv)
    if args.customers < 1 or not 1 <= args.invoices_per_customer <= 1000:
        parser.error("need --customers >= 1 and 1 <= --invoices-per-customer <= 1000")
    now = int(time.time()) // 3600 * 3600
    return args, Shape(args.customers, args.invoices_per_customer, now=now)


def main() -> int:
    args, shape = parse_shape()
    database_url = _procs_url()
    setup_django(database_url)
    counts, seconds = generate(database_url, shape)
    rows = " ".join(f"{table.split('_', 1)[1]}={n}" for table, n in counts.rows.items())
    print(
        f"dataset=generated customers={shape.customers} seconds={seconds:.0f} "
        f"size={database_size(database_url).replace(' ', '')} {rows}"
    )
    if not args.keep:
        import _procs

        _procs.database_drop(database_url)
    return 0


def _procs_url() -> str:
    import _procs

    return str(_procs.bench_database_url(DEFAULT_DATABASE_URL, "dataset"))


if __name__ == "__main__":
    raise SystemExit(main())
