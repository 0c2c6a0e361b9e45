"""Every hot query has an index to read: the statements the pages, the API, the billing clock,
reconciliation and the staff lookup send (captured from the real code paths by
``bench/hot_queries.py``) are planned without a sequential scan of the billing tables.

A small dataset (the benchmark's own generator) makes the planner prefer sequential scans, which
are cheapest on small tables: each statement is planned with ``enable_seqscan = off``, which still
picks a sequential scan where no index can answer it. ``bench/hot_queries.py`` measures the same
statements against 1,000,000 customers, where the planner chooses freely.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from tollgate.billing.integrity import ledger_check
from tollgate.core import clock

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import dataset
import hot_queries

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="index use is a PostgreSQL planner question (SQLite has no such indexes)",
)


@pytest.fixture
def loaded() -> dataset.Counts:
    call_command("catalog_load", "demo", verbosity=0, stdout=io.StringIO())
    shape = dataset.Shape(customers=120, invoices_per_customer=3, now=int(clock.now().timestamp()))
    connection.ensure_connection()
    with connection.cursor() as cursor:
        counts = dataset.load_checked(cursor.cursor, shape)
        cursor.execute("ANALYZE")
    return counts


def plan(statement: hot_queries.Statement) -> dict[str, Any]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement.sql, statement.params)
        document = cursor.fetchone()[0]
    return dict((json.loads(document) if isinstance(document, str) else document)[0]["Plan"])


@postgres_only
@pytest.mark.django_db
def test_generated_dataset_satisfies_the_ledger_and_numbering(loaded: dataset.Counts) -> None:
    assert loaded.rows["billing_invoice"] == 360
    assert loaded.rows["billing_ledgerentry"] == 2 * loaded.rows["billing_ledgertransaction"]
    assert ledger_check().ok
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT number) FROM billing_invoice")
        assert cursor.fetchone()[0] == 360


@postgres_only
@pytest.mark.django_db
def test_no_hot_query_scans_a_billing_table_sequentially(loaded: dataset.Counts) -> None:
    statements = hot_queries.run_cases(hot_queries.sample())
    cases = {statement.case for statement in statements}
    assert {"billing_page", "api_invoices", "billing_clock", "staff_lookup_card_last4"} <= cases

    scanned = {
        f"{statement.case}: {statement.sql[:120]}": tables
        for statement in statements
        if (tables := hot_queries.seq_scans(plan(statement), set(dataset.TABLES)))
    }

    assert scanned == {}


def test_timestamps_are_written_in_utc() -> None:
    moment = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    assert dataset.ts(int(moment.timestamp())) == "2026-03-04 05:06:07+00"
