"""The embedded default (`make run`) as separate processes: a web server and a worker started apart,
as `serve --no-worker` and `serve --no-web`, on one data directory. A plan change made elsewhere
reaches the web process's billing page once the worker has handled its invalidation: no process
keeps a copy of the entitlements that another one drops."""

from __future__ import annotations

import http.client
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.deploy.test_serve import (
    REPO_ROOT,
    _connect_when_listening,
    _free_port,
    _serve,
    _stop,
)

# Each step runs in a process of its own, like a person's second terminal would.
_SUBSCRIBE = """
import django; django.setup()
from django.conf import settings
from django.test import Client
from tollgate.accounts.models import User
from tollgate.billing import services
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.catalog.models import Price
user = User.objects.create_user(email="pro@example.org", password="Correct-Horse-42-Battery")
customer = services.customer_get_or_create(user=user)
setup = services.payment_method_setup_start(customer=customer, return_url="http://127.0.0.1/")
SandboxGateway().setup_submit(
    session_reference=setup.reference, number="4242424242424242", exp_month=12, exp_year=2099
)
services.payment_method_attach(customer=customer, setup_reference=setup.reference)
services.subscription_start(
    customer=customer,
    price=Price.objects.get(plan__code="pro", interval="month"),
    trial=False,
    idempotency_key="first-subscription",
)
client = Client()
client.force_login(user)
print(settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value)
"""

_UPGRADE = """
import django; django.setup()
from tollgate.billing import services
from tollgate.billing.models import Subscription
from tollgate.catalog.models import Price
services.subscription_change_price(
    subscription=Subscription.objects.get(customer__user__email="pro@example.org"),
    price=Price.objects.get(plan__code="business", interval="month"),
    idempotency_key="upgrade-to-business",
)
"""


def _environ(data_dir: Path) -> dict[str, str]:
    """What serve's test starts its processes with (the embedded default in ``data_dir``), for
    the steps run beside them."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("DEBUG")}
    environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return {
        **environ,
        "TOLLGATE_ENV": "development",
        "TOLLGATE_DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'tollgate.sqlite3'}",
        "REDIS_URL": "",
        "DJANGO_SETTINGS_MODULE": "tollgate.config.settings",
    }


def _run(environ: dict[str, str], *argv: str) -> str:
    completed = subprocess.run(
        [sys.executable, *argv],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def _billing_page(port: int, cookie: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", "/billing/", headers={"Cookie": cookie})
        response = connection.getresponse()
        body = response.read().decode()
    finally:
        connection.close()
    assert response.status == 200, body[:2000]
    return body


def _invalidation_delivered(database: Path, worker: subprocess.Popen[bytes]) -> bool:
    """Whether the worker has handled every entitlement invalidation queued so far."""
    assert worker.poll() is None, "the worker stopped"
    with sqlite3.connect(database) as connection:
        (pending,) = connection.execute(
            "SELECT count(*) FROM core_outboxmessage"
            " WHERE kind = 'billing.entitlements_changed' AND status != 'delivered'"
        ).fetchone()
    return bool(pending == 0)


def test_a_plan_change_reaches_the_web_process_once_the_separate_worker_handled_it(tmp_path):
    environ = _environ(tmp_path)
    _run(environ, "-m", "tollgate", "migrate", "--no-input", "-v", "0")
    _run(environ, "-m", "tollgate", "catalog_load", "demo")
    cookie_name, cookie_value = _run(environ, "-c", _SUBSCRIBE).split()
    cookie = f"{cookie_name}={cookie_value}"
    database = tmp_path / "tollgate.sqlite3"
    assert database.exists()

    port = _free_port()
    web = _serve(tmp_path, "--no-worker", "--port", str(port))
    worker = _serve(tmp_path, "--no-web")
    try:
        _connect_when_listening(port, web).close()
        # The web process reads the Pro entitlements (and keeps them in its cache).
        before = _billing_page(port, cookie)
        assert "Upgrade to Business" in before
        assert "Business includes SSO." in before

        _run(environ, "-c", _UPGRADE)  # a third process changes the plan
        # Bound the work, not the time: wait for the worker to handle the invalidation.
        waited = 0
        while not _invalidation_delivered(database, worker):
            waited += 1
            assert waited < 6000, "the worker never handled the invalidation"
            subprocess.run(["sleep", "0.05"], check=True)

        after = _billing_page(port, cookie)
        assert "Business includes SSO." not in after
        assert "Upgrade to Business" not in after
    finally:
        _stop(web)
        _stop(worker)
