"""Stored idempotent requests and hidden form tokens, against the real database."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import DatabaseError, OperationalError, transaction
from django.test import override_settings

from tollgate.accounts.models import User
from tollgate.core import clock, idempotency
from tollgate.core.errors import (
    FormTokenInvalid,
    IdempotencyKeyInProgress,
    IdempotencyKeyInvalid,
    IdempotencyKeyReused,
)
from tollgate.core.idempotency import (
    IdempotencyClaim,
    IdempotencyReplay,
    PublicIdResult,
    form_token_issue,
    form_token_redeem,
    idempotency_claim,
    idempotency_complete,
    idempotency_purge,
    idempotency_release,
    idempotent,
    request_fingerprint,
)
from tollgate.core.models import IdempotencyRecord

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)
USERS = PublicIdResult(User)


def claim(key="k1", scope="cus_A", operation="thing_do", **parameters):
    return idempotency_claim(
        scope=scope, key=key, operation=operation, parameters=parameters or {"amount": 100}
    )


def record(key="k1", scope="cus_A") -> IdempotencyRecord:
    return IdempotencyRecord.objects.get(scope=scope, key=key)


# --- Fingerprints and keys -------------------------------------------------------------------------
def test_the_fingerprint_is_the_sha256_of_canonical_json_so_key_order_does_not_matter():
    first = request_fingerprint(operation="op", parameters={"a": 1, "b": [True, None, "x"]})
    second = request_fingerprint(operation="op", parameters={"b": [True, None, "x"], "a": 1})
    assert first == second
    assert len(first) == 64
    assert request_fingerprint(operation="other", parameters={"a": 1, "b": [True, None, "x"]}) != (
        first
    )
    assert request_fingerprint(operation="op", parameters={"a": 2, "b": [True, None, "x"]}) != (
        first
    )


@pytest.mark.parametrize("value", [1.5, {1: "int key"}, object()])
def test_the_fingerprint_refuses_values_that_are_not_plain_json(value):
    with pytest.raises(TypeError):
        request_fingerprint(operation="op", parameters={"amount": value})


@pytest.mark.parametrize("key", ["", " padded", "tab\there", "é", "x" * 256])
def test_keys_must_be_1_to_255_printable_ascii_characters(key):
    with pytest.raises(IdempotencyKeyInvalid) as refused:
        claim(key=key)
    assert refused.value.status == 422
    assert refused.value.code == "idempotency_key_invalid"


def test_a_255_character_key_is_accepted():
    assert isinstance(claim(key="k" * 255), IdempotencyClaim)


# --- Claims -----------------------------------------------------------------------------------------
def test_same_key_and_request_after_completion_returns_the_stored_response():
    first = claim()
    assert isinstance(first, IdempotencyClaim)
    idempotency_complete(claim=first, response={"id": "thing_1"})
    again = claim()
    assert again == IdempotencyReplay(response={"id": "thing_1"})
    stored = record()
    assert (stored.state, stored.operation, stored.response) == (
        "completed",
        "thing_do",
        {"id": "thing_1"},
    )
    assert stored.completed_at is not None


def test_same_key_with_a_different_request_is_refused_with_422():
    idempotency_complete(claim=claim(), response={"id": "thing_1"})
    with pytest.raises(IdempotencyKeyReused) as refused:
        claim(amount=200)
    assert (refused.value.status, refused.value.code) == (422, "idempotency_key_reused")
    with pytest.raises(IdempotencyKeyReused):
        claim(operation="other_thing")


def test_same_key_while_the_first_is_in_progress_is_a_409_conflict():
    assert isinstance(claim(), IdempotencyClaim)
    with pytest.raises(IdempotencyKeyInProgress) as refused:
        claim()
    assert (refused.value.status, refused.value.code) == (409, "idempotency_key_in_progress")


def test_keys_belong_to_their_scope():
    assert isinstance(claim(scope="cus_A"), IdempotencyClaim)
    assert isinstance(claim(scope="cus_B", amount=999), IdempotencyClaim)
    assert IdempotencyRecord.objects.count() == 2


def test_a_failed_request_frees_the_key_for_the_same_request_only():
    first = claim()
    idempotency_release(claim=first, error=ValueError("boom"))
    assert (record().state, record().error_code) == ("failed", "ValueError")
    with pytest.raises(IdempotencyKeyReused):
        claim(amount=200)
    retry = claim()
    assert isinstance(retry, IdempotencyClaim)
    assert retry.lease_token != first.lease_token
    assert (record().state, record().error_code) == ("in_progress", "")


def test_an_error_after_the_checkpoint_completes_the_record_with_the_checkpoint():
    first = claim()
    with transaction.atomic():
        first.checkpoint({"id": "thing_1"})
    idempotency_release(claim=first, error=IdempotencyKeyInProgress())
    stored = record()
    assert (stored.state, stored.response, stored.error_code) == (
        "completed",
        {"id": "thing_1"},
        "idempotency_key_in_progress",
    )
    assert claim() == IdempotencyReplay(response={"id": "thing_1"})


def test_a_checkpoint_rolled_back_with_its_transaction_leaves_no_result():
    first = claim()
    with pytest.raises(RuntimeError), transaction.atomic():
        first.checkpoint({"id": "never_committed"})
        raise RuntimeError("the effect failed")
    idempotency_release(claim=first, error=RuntimeError("the effect failed"))
    assert (record().state, record().response) == ("failed", None)


@pytest.mark.django_db(transaction=True)
def test_a_checkpoint_outside_a_transaction_is_refused():
    first = claim()
    with pytest.raises(RuntimeError, match="transaction"):
        first.checkpoint({"id": "x"})


def test_an_abandoned_claim_is_taken_over_after_its_lease_and_the_old_claim_is_void():
    with clock.frozen(T0):
        crashed = claim()
    with clock.frozen(T0 + dt.timedelta(seconds=299)), pytest.raises(IdempotencyKeyInProgress):
        claim()
    with clock.frozen(T0 + dt.timedelta(seconds=301)):
        retry = claim()
    assert isinstance(retry, IdempotencyClaim)
    assert retry.lease_token != crashed.lease_token
    # The crashed worker coming back can neither checkpoint, nor complete, nor release the key.
    with pytest.raises(IdempotencyKeyInProgress), transaction.atomic():
        crashed.checkpoint({"id": "late"})
    idempotency_complete(claim=crashed, response={"id": "late"})
    idempotency_release(claim=crashed, error=ValueError("late"))
    assert (record().state, record().response) == ("in_progress", None)
    with clock.frozen(T0 + dt.timedelta(seconds=302)):
        idempotency_complete(claim=retry, response={"id": "thing_2"})
        assert claim() == IdempotencyReplay(response={"id": "thing_2"})


def test_an_abandoned_claim_with_a_checkpoint_completes_with_it_after_the_lease():
    with clock.frozen(T0):
        crashed = claim()
        with transaction.atomic():
            crashed.checkpoint({"id": "thing_1"})
    with clock.frozen(T0 + dt.timedelta(minutes=1)), pytest.raises(IdempotencyKeyInProgress):
        claim()
    with clock.frozen(T0 + dt.timedelta(minutes=6)):
        assert claim() == IdempotencyReplay(response={"id": "thing_1"})
    assert record().state == "completed"


@override_settings(IDEMPOTENCY_LEASE_SECONDS=60)
def test_the_lease_is_a_setting():
    with clock.frozen(T0):
        claim()
    with clock.frozen(T0 + dt.timedelta(seconds=61)):
        assert isinstance(claim(), IdempotencyClaim)


def test_a_key_older_than_the_retention_is_a_new_request_even_before_the_purge():
    with clock.frozen(T0):
        idempotency_complete(claim=claim(), response={"id": "thing_1"})
    with clock.frozen(T0 + dt.timedelta(hours=23, minutes=59)):
        assert isinstance(claim(), IdempotencyReplay)
    with clock.frozen(T0 + dt.timedelta(hours=24)):
        fresh = claim(amount=500)
    assert isinstance(fresh, IdempotencyClaim)
    stored = record()
    assert (stored.state, stored.response, stored.created_at) == (
        "in_progress",
        None,
        T0 + dt.timedelta(hours=24),
    )
    assert stored.fingerprint == request_fingerprint(
        operation="thing_do", parameters={"amount": 500}
    )


def test_a_release_the_database_refused_is_done_by_the_next_claim(monkeypatch):
    """The database went away while the work ran, so the release could not be written either: the
    key would answer 409 until its lease ran out. The process keeps the release and writes it
    with its next claim, once the database answers again."""
    first = claim()
    healthy = IdempotencyRecord.objects.select_for_update

    def unreachable(*args, **kwargs):
        raise DatabaseError("server closed the connection unexpectedly")

    monkeypatch.setattr(IdempotencyRecord.objects, "select_for_update", unreachable)
    idempotency_release(claim=first, error=OperationalError("connection lost"))
    monkeypatch.setattr(IdempotencyRecord.objects, "select_for_update", healthy)
    assert record().state == "in_progress"

    assert isinstance(claim(key="k2"), IdempotencyClaim)  # any claim of this process
    assert (record().state, record().error_code) == ("failed", "OperationalError")
    assert isinstance(claim(), IdempotencyClaim)  # the same request again runs afresh


def test_releasing_a_claim_whose_record_is_gone_does_nothing():
    ghost = IdempotencyClaim(record_id=10**9, lease_token="gone")
    idempotency_release(claim=ghost, error=ValueError("x"))
    idempotency_complete(claim=ghost, response={})
    assert not IdempotencyRecord.objects.exists()


# --- The wrapper --------------------------------------------------------------------------------------
def make_user(email: str) -> User:
    return User.objects.create_user(email=email, password="correct-horse-battery-staple-42")


def run_keyed(key: str, email: str, calls: list[str]) -> User:
    def work(held: IdempotencyClaim) -> User:
        calls.append(email)
        with transaction.atomic():
            user = make_user(email)
            held.checkpoint(USERS.dump(user))
        return user

    return idempotent(
        scope="cus_A",
        key=key,
        operation="user_create",
        parameters={"email": email},
        result=USERS,
        work=work,
    )


def test_idempotent_runs_the_work_once_and_replays_the_object_read_fresh():
    calls: list[str] = []
    first = run_keyed("k", "one@example.org", calls)
    User.objects.filter(pk=first.pk).update(email="renamed@example.org")
    again = run_keyed("k", "one@example.org", calls)
    assert calls == ["one@example.org"]
    assert again.pk == first.pk
    assert again.email == "renamed@example.org"
    assert record(key="k").response == {"object": "accounts.user", "id": first.public_id}
    with pytest.raises(IdempotencyKeyReused):
        run_keyed("k", "two@example.org", calls)


def test_idempotent_releases_the_key_when_the_work_raises_so_a_retry_runs_it_again():
    attempts: list[int] = []

    def flaky(held: IdempotencyClaim) -> User:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("the network blinked")
        with transaction.atomic():
            user = make_user("flaky@example.org")
            held.checkpoint(USERS.dump(user))
        return user

    def call() -> User:
        return idempotent(
            scope="cus_A", key="k", operation="op", parameters={}, result=USERS, work=flaky
        )

    with pytest.raises(ConnectionError):
        call()
    assert record(key="k").state == "failed"
    user = call()
    assert call() == user
    assert len(attempts) == 2


# --- Retention ------------------------------------------------------------------------------------------
def test_the_purge_forgets_records_past_the_retention_only():
    with clock.frozen(T0):
        claim(key="old")
    with clock.frozen(T0 + dt.timedelta(hours=2)):
        claim(key="recent")
    with clock.frozen(T0 + dt.timedelta(hours=24, seconds=1)):
        assert idempotency_purge(batch_size=1) == 1
        assert idempotency_purge() == 0
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["recent"]


@override_settings(IDEMPOTENCY_RETENTION_HOURS=1)
def test_the_retention_is_a_setting_and_the_hourly_task_purges():
    from tollgate.core.tasks import idempotency_purge_task

    with clock.frozen(T0):
        claim(key="old")
    with clock.frozen(T0 + dt.timedelta(hours=1, seconds=1)):
        idempotency_purge_task.call_local()
    assert not IdempotencyRecord.objects.exists()


# --- Hidden form tokens ---------------------------------------------------------------------------------
def test_a_form_token_redeems_to_one_stable_key_for_its_form_and_owner():
    token = form_token_issue(purpose="subscription_start", owner="usr_A")
    key = form_token_redeem(token=token, purpose="subscription_start", owner="usr_A")
    assert key.startswith("form-")
    assert form_token_redeem(token=token, purpose="subscription_start", owner="usr_A") == key
    other = form_token_issue(purpose="subscription_start", owner="usr_A")
    assert form_token_redeem(token=other, purpose="subscription_start", owner="usr_A") != key
    assert idempotency.idempotency_key_check(key) == key


@pytest.mark.parametrize(
    ("purpose", "owner"), [("subscription_cancel", "usr_A"), ("subscription_start", "usr_B")]
)
def test_a_form_token_is_refused_for_another_form_or_owner(purpose, owner):
    token = form_token_issue(purpose="subscription_start", owner="usr_A")
    with pytest.raises(FormTokenInvalid) as refused:
        form_token_redeem(token=token, purpose=purpose, owner=owner)
    assert (refused.value.status, refused.value.code) == (422, "form_token_invalid")


@pytest.mark.parametrize("token", ["", "not-a-token", "eyJwIjoieCJ9:1abc:forged"])
def test_a_forged_or_tampered_form_token_is_refused(token):
    with pytest.raises(FormTokenInvalid):
        form_token_redeem(token=token, purpose="subscription_start", owner="usr_A")


def test_a_form_token_expires_with_the_retention_period():
    with clock.frozen(T0):
        token = form_token_issue(purpose="invoice_pay", owner="usr_A")
    with clock.frozen(T0 + dt.timedelta(hours=24)):
        assert form_token_redeem(token=token, purpose="invoice_pay", owner="usr_A")
    with clock.frozen(T0 + dt.timedelta(hours=24, seconds=1)), pytest.raises(FormTokenInvalid):
        form_token_redeem(token=token, purpose="invoice_pay", owner="usr_A")
    with clock.frozen(T0 - dt.timedelta(minutes=5)), pytest.raises(FormTokenInvalid):
        form_token_redeem(token=token, purpose="invoice_pay", owner="usr_A")


def test_submitting_a_form_twice_returns_the_first_result():
    token = form_token_issue(purpose="user_create", owner="usr_A")
    calls: list[str] = []
    submit = [
        run_keyed(
            form_token_redeem(token=token, purpose="user_create", owner="usr_A"),
            "form@example.org",
            calls,
        )
        for _ in range(2)
    ]
    assert submit[0] == submit[1]
    assert calls == ["form@example.org"]
    with pytest.raises(IdempotencyKeyReused):
        run_keyed(
            form_token_redeem(token=token, purpose="user_create", owner="usr_A"),
            "changed@example.org",
            calls,
        )
