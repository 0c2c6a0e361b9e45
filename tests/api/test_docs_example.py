"""The Python example in docs/api.md works against a running Tollgate, as an operator pastes it."""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import json
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tollgate.integrations import keys

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "tollgate_client.py"


def test_the_example_in_the_docs_is_the_tested_file():
    docs = (ROOT / "docs" / "api.md").read_text()
    assert f"```python\n{EXAMPLE.read_text()}```" in docs


@pytest.mark.django_db(transaction=True)
def test_the_example_checks_reports_and_verifies(
    live_server, monkeypatch, make_api_customer, subscribe
):
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    monkeypatch.setenv("TOLLGATE_URL", live_server.url)
    monkeypatch.setenv(
        "TOLLGATE_API_KEY",
        keys.api_key_create(name="example", scopes=["entitlements:read", "usage:write"]).secret,
    )
    monkeypatch.setenv("TOLLGATE_WEBHOOK_SECRET", secret)
    spec = importlib.util.spec_from_file_location("tollgate_client", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    subscribe(make_api_customer("user_1"), "pro")  # 10 projects
    assert example.may_create_project("user_1") is True
    now = dt.datetime.now(dt.UTC).isoformat()
    for number in range(10):
        example.project_created("user_1", str(number), now)
    example.project_created("user_1", "9", now)  # a resend changes nothing
    assert example.may_create_project("user_1") is False

    body = json.dumps({"type": "invoice.paid", "data": {}}).encode()
    timestamp = dt.datetime.now(dt.UTC)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_1", timestamp, body.decode()),
    }
    assert example.tollgate_webhook(body, headers)["type"] == "invoice.paid"
    with pytest.raises(WebhookVerificationError):
        example.tollgate_webhook(body.replace(b"paid", b"void"), headers)
