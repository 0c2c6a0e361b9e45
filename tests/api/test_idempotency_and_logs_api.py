"""``Idempotency-Key`` on the API's POSTs, and API keys kept out of every log line."""

from __future__ import annotations

import hashlib
import json

import pytest

from tollgate.billing.models import Customer
from tollgate.core.idempotency import idempotency_claim
from tollgate.core.redaction import scrub_text
from tollgate.integrations import keys

pytestmark = pytest.mark.django_db

BODY = {"external_id": "u1", "email": "u1@example.org"}


def test_the_same_key_and_body_return_the_first_answer(api):
    first = api.post("/customers", BODY, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    replay = api.post("/customers", BODY, headers={"Idempotency-Key": "k-1"})
    assert replay.status_code == 201  # the first answer, status included
    assert replay.json() == first.json()
    assert replay["Idempotent-Replayed"] == "true"
    assert Customer.objects.count() == 1


def test_the_same_key_with_another_body_is_refused(api):
    api.post("/customers", BODY, headers={"Idempotency-Key": "k-1"})
    other = api.post(
        "/customers", {**BODY, "external_id": "u2"}, headers={"Idempotency-Key": "k-1"}
    )
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_the_same_key_while_the_first_request_runs_is_a_conflict(api):
    idempotency_claim(
        scope="api:operator",
        key="k-1",
        operation="customers.create",
        parameters={
            "path": "/api/v1/customers",
            "body": hashlib.sha256(
                json.dumps(BODY, sort_keys=True, separators=(",", ":")).encode()
            ).hexdigest(),
        },
    )
    response = api.post("/customers", BODY, headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_in_progress"


def test_a_failed_request_leaves_its_key_free_for_a_retry(api, make_api_customer):
    make_api_customer("taken", email="taken@example.org")
    clash = {"external_id": "u9", "email": "taken@example.org"}
    assert api.post("/customers", clash, headers={"Idempotency-Key": "k-2"}).status_code == 409
    Customer.objects.filter(external_id="taken").update(email="moved@example.org")
    from tollgate.accounts.models import User

    User.objects.filter(email="taken@example.org").update(email="moved@example.org")
    retried = api.post("/customers", clash, headers={"Idempotency-Key": "k-2"})
    assert retried.status_code == 201


def test_keys_of_other_callers_never_collide(api):
    api.post("/customers", BODY, headers={"Idempotency-Key": "shared"})
    other = keys.api_key_create(name="second", scopes=["customers:write"]).secret
    # The operator's keys share one scope: the same request under the same key is a replay.
    replay = api.post("/customers", BODY, key=other, headers={"Idempotency-Key": "shared"})
    assert replay["Idempotent-Replayed"] == "true"


def test_an_invalid_idempotency_key_is_a_clear_error(api):
    response = api.post("/customers", BODY, headers={"Idempotency-Key": "x" * 256})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_invalid"


def test_api_keys_are_redacted_from_free_text():
    key = "tg_live_" + "A1b2C3d4E5f6" + "x" * 40
    assert key not in scrub_text(f"called with {key} and failed")
    assert "tg_live_" in scrub_text("the tg_live_ prefix")  # a prefix alone is not a secret


def test_api_keys_never_reach_the_logs(api, operator_key, captured_logs):
    api.get("/customers")
    api.get("/customers", key=operator_key[:-2] + "zz")
    api.post("/customers", {"email": operator_key})
    assert operator_key not in captured_logs.text
    assert operator_key[8:40] not in captured_logs.text
