"""Kill a real ``manage.py billing_run`` process at random points, run it again, and check the books."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.billing import periods, services
from tollgate.billing.clock import billing_run
from tollgate.billing.gateways.sandbox.models import SandboxCharge
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Invoice, PaymentAttempt, Subscription
from tollgate.core import clock

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: worker processes share the test database",
    ),
]
ROOT = Path(__file__).resolve().parents[3]
SUBSCRIPTIONS = 60
KILLS = 20


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")  # secret-scan: allow
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def test_killing_the_billing_clock_anywhere_loses_and_duplicates_nothing(make_customer, price):
    now = clock.now().replace(microsecond=0)
    start = now - dt.timedelta(days=95)  # about three monthly renewals are due for each
    with clock.frozen(start):
        for index in range(SUBSCRIPTIONS):
            payer = make_customer(f"payer{index}@example.org")
            add_card(payer, CARD_OK)
            services.subscription_start(
                customer=payer, price=price("pro"), idempotency_key=new_key()
            )

    env = {**os.environ, "DATABASE_URL": database_url(), "TOLLGATE_ENV": "test"}
    chance = random.Random(20251)
    for _ in range(KILLS):
        worker = subprocess.Popen(
            [sys.executable, "-m", "tollgate", "billing_run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(chance.uniform(0.6, 2.5))
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)

    # A later run, once requests cut off mid-flight are old enough to be asked about, finishes.
    final = now + dt.timedelta(minutes=5)
    with clock.frozen(final):
        billing_run()

    anchor = Subscription.objects.first().billing_anchor
    expected = periods.period_at(anchor=anchor, months=1, at=final)
    renewals = next(  # the index of the current period = the renewals so far
        index
        for index in range(1, 24)
        if periods.period_number(anchor=anchor, months=1, index=index) == expected
    )
    cycle = Invoice.objects.filter(billing_reason="subscription_cycle")
    for subscription in Subscription.objects.all():
        assert subscription.current_period_start == expected.start
        starts = sorted(
            cycle.filter(subscription=subscription).values_list("period_start", flat=True)
        )
        assert starts == [
            periods.period_number(anchor=anchor, months=1, index=index).start
            for index in range(1, renewals + 1)
        ]
    assert cycle.count() == SUBSCRIPTIONS * renewals
    assert cycle.exclude(status="paid").count() == 0
    assert not PaymentAttempt.objects.filter(status__in=["pending", "unknown"]).exists()
    for invoice in Invoice.objects.all():
        assert invoice.payments.filter(status="succeeded").count() == 1
    assert SandboxCharge.objects.filter(status="succeeded").count() == Invoice.objects.count()
    assert ledger_check().ok
