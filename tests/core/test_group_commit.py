"""Group commit with real threads: shared batches, each caller its own outcome, no caller left behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from tests import concurrency
from tollgate.core.group_commit import GroupCommit, GroupCommitBusy


class SlowWriter:
    """Doubles numbers, taking ``seconds`` per write so that callers pile up behind it."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.batches: list[list[int]] = []
        self.after: list[list[int]] = []
        self.writing = 0
        self.most_writing_at_once = 0
        self.lock = threading.Lock()

    def write(self, items: Sequence[int]) -> list[int]:
        with self.lock:
            self.writing += 1
            self.most_writing_at_once = max(self.most_writing_at_once, self.writing)
        time.sleep(self.seconds)
        with self.lock:
            self.writing -= 1
            self.batches.append(list(items))
        return [item * 2 for item in items]

    def after_write(self, results: Sequence[int]) -> None:
        with self.lock:
            self.after.append(list(results))


def test_concurrent_callers_share_batches_and_each_gets_its_own_result() -> None:
    writer = SlowWriter()
    group = GroupCommit(writer.write, after_write=writer.after_write, max_batch=100, timeout=10)

    results = concurrency.race(group.submit, 24, timeout=30)

    assert results == [index * 2 for index in range(24)]
    assert sorted(item for batch in writer.batches for item in batch) == list(range(24))
    assert len(writer.batches) < 24  # callers that arrived during a write shared the next one
    assert writer.most_writing_at_once == 1
    assert sorted(writer.after) == sorted([item * 2 for item in batch] for batch in writer.batches)


def test_batches_never_exceed_the_maximum() -> None:
    writer = SlowWriter()
    group = GroupCommit(writer.write, max_batch=3, timeout=10)

    concurrency.race(group.submit, 12, timeout=30)

    assert max(len(batch) for batch in writer.batches) <= 3
    assert sorted(item for batch in writer.batches for item in batch) == list(range(12))


def test_a_failed_write_fails_every_caller_in_its_batch_and_the_next_batch_still_runs() -> None:
    class Refused(Exception):
        pass

    written: list[list[int]] = []

    def write(items: Sequence[int]) -> list[int]:
        time.sleep(0.05)
        written.append(list(items))
        if len(written) == 1:
            raise Refused("the first write fails")
        return list(items)

    group = GroupCommit(write, timeout=10)
    outcomes = concurrency.race(group.submit, 10, timeout=30)

    failed = [index for index, outcome in enumerate(outcomes) if isinstance(outcome, Refused)]
    assert sorted(failed) == sorted(written[0])
    assert all(outcomes[index] == index for index in range(10) if index not in failed)
    assert group.submit(99) == 99  # nothing is stuck: a later caller leads a write of its own


def test_a_write_that_returns_the_wrong_number_of_results_fails_its_callers() -> None:
    group: GroupCommit[int, int] = GroupCommit(lambda items: [], timeout=10)
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        group.submit(1)


def test_a_caller_that_waits_too_long_gets_busy_and_its_queued_item_is_never_written() -> None:
    release = threading.Event()
    written: list[int] = []

    def write(items: Sequence[int]) -> list[int]:
        release.wait(10)
        written.extend(items)
        return list(items)

    group = GroupCommit(write, timeout=0.2)
    leader = threading.Thread(target=group.submit, args=(1,))
    leader.start()
    time.sleep(0.05)  # the leader is writing; the next caller queues behind it
    with pytest.raises(GroupCommitBusy):
        group.submit(2)
    release.set()
    leader.join(10)

    assert written == [1]
    assert group.submit(3) == 3


def test_the_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommit(list, max_batch=0)
    with pytest.raises(ValueError, match="timeout"):
        GroupCommit(list, timeout=0)
