from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction

from tollgate.core import clock, outbox
from tollgate.core.models import OutboxMessage

pytestmark = pytest.mark.django_db

delivered: list[dict] = []


def record(payload: dict) -> None:
    if payload.get("fail"):
        raise ConnectionError("peer down")
    delivered.append(payload)


@pytest.fixture(autouse=True)
def _handler():
    delivered.clear()
    outbox.register("test.record", record)
    yield
    outbox._handlers.pop("test.record", None)


@pytest.mark.django_db(transaction=True)
def test_enqueue_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError):
        outbox.outbox_enqueue(kind="test.record", payload={}, dedupe_key="a")


def test_enqueue_needs_a_registered_handler():
    with pytest.raises(ValueError, match="no outbox handler"), transaction.atomic():
        outbox.outbox_enqueue(kind="nobody", payload={}, dedupe_key="a")


def test_message_is_delivered_after_commit_only(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        outbox.outbox_enqueue(kind="test.record", payload={"n": 1}, dedupe_key="k1")
        assert delivered == []
    assert len(callbacks) == 1
    assert delivered == [{"n": 1}]
    assert OutboxMessage.objects.get(dedupe_key="k1").status == OutboxMessage.Status.DELIVERED


def test_rolled_back_change_leaves_no_message(django_capture_on_commit_callbacks):
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(KeyError),
        transaction.atomic(),
    ):
        outbox.outbox_enqueue(kind="test.record", payload={"n": 1}, dedupe_key="k1")
        raise KeyError("boom")
    assert not OutboxMessage.objects.exists()
    assert delivered == []


def test_same_dedupe_key_is_enqueued_once(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        first = outbox.outbox_enqueue(kind="test.record", payload={"n": 1}, dedupe_key="same")
        second = outbox.outbox_enqueue(kind="test.record", payload={"n": 2}, dedupe_key="same")
    assert first is not None
    assert second is None
    assert delivered == [{"n": 1}]


def test_a_delivered_message_is_not_delivered_again(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        message = outbox.outbox_enqueue(kind="test.record", payload={"n": 1}, dedupe_key="once")
    assert message is not None
    assert outbox.outbox_deliver(message_id=message.pk) is False
    assert outbox.outbox_sweep() == 0
    assert delivered == [{"n": 1}]


def test_failures_back_off_then_give_up_with_the_error_kept(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        message = outbox.outbox_enqueue(kind="test.record", payload={"fail": True}, dedupe_key="f")
    assert message is not None
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.PENDING
    assert message.attempts == 1
    assert message.last_error == "ConnectionError: peer down"
    assert message.available_at > clock.now()

    start = clock.now()
    for attempt in range(2, outbox.MAX_ATTEMPTS + 1):
        with clock.frozen(start + dt.timedelta(days=attempt)):
            assert outbox.outbox_sweep() == 0
        message.refresh_from_db()
        assert message.attempts == attempt
    assert message.status == OutboxMessage.Status.FAILED


def test_sweep_delivers_messages_whose_schedule_was_lost():
    with transaction.atomic():  # no on-commit callbacks run inside a test transaction here
        outbox.outbox_enqueue(kind="test.record", payload={"n": 1}, dedupe_key="lost-1")
        outbox.outbox_enqueue(kind="test.record", payload={"n": 2}, dedupe_key="lost-2")
    assert delivered == []
    assert outbox.outbox_sweep() == 2
    assert sorted(p["n"] for p in delivered) == [1, 2]


def test_retry_delay_grows_and_is_capped():
    delays = [outbox.retry_delay(n).total_seconds() for n in range(1, 12)]
    assert delays[:3] == [30, 60, 120]
    assert delays == sorted(delays)
    assert max(delays) == 3600


def test_a_batch_writes_its_messages_at_once_and_delivers_them_with_one_task(
    django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        outbox.outbox_enqueue(kind="test.record", payload={"n": 0}, dedupe_key="used")
        with django_assert_max_num_queries(2), outbox.outbox_batch():
            for n in range(1, 6):
                outbox.outbox_enqueue(kind="test.record", payload={"n": n}, dedupe_key=f"b{n}")
            # A key used twice in the batch keeps its first message; one used before, its own.
            outbox.outbox_enqueue(kind="test.record", payload={"n": 99}, dedupe_key="b1")
            outbox.outbox_enqueue(kind="test.record", payload={"n": 98}, dedupe_key="used")
        assert delivered == []
    assert len(callbacks) == 2  # the message before the batch, and the batch's one task
    assert sorted(payload["n"] for payload in delivered) == [0, 1, 2, 3, 4, 5]
    assert OutboxMessage.objects.filter(status=OutboxMessage.Status.DELIVERED).count() == 6


def test_a_batch_that_fails_writes_nothing(django_capture_on_commit_callbacks):
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(KeyError),
        transaction.atomic(),
        outbox.outbox_batch(),
    ):
        outbox.outbox_enqueue(kind="test.record", payload={"n": 1}, dedupe_key="k1")
        raise KeyError("boom")
    assert not OutboxMessage.objects.exists()
    assert delivered == []
