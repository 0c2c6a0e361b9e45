"""Group commit: what concurrent threads of one process hand in is written in shared batches.

A write that costs mostly its round trips and its commit (storing one inbound event is one small
INSERT) costs about the same for ten rows as for one. :class:`GroupCommit` lets the threads of a
web worker share those writes without a thread of its own:

- the first caller to find no write in progress becomes the *leader*: it takes what is queued (its
  own item and whatever arrived meanwhile, at most ``max_batch``) and writes it, in its own thread,
  with its own database connection and transaction state, like any other caller;
- callers that arrive while a write is in progress queue their item and wait;
- when the leader's write is done, each waiting caller of that batch gets its own result (or the
  write's exception); if more items queued meanwhile, the oldest waiting caller is woken to lead
  the next batch, so a leader only ever waits for the one write that holds its own item;
- then the leader runs ``after_write(results)`` (queueing work, logging), while the next
  batch is already being written: what follows a write does not hold up the next one.

A caller waits at most ``timeout`` seconds and then gets :class:`GroupCommitBusy`. Its item may
still be written afterwards (it was already in a batch being written), so writes must be idempotent
for the caller to retry: the inbox's unique event id makes a redelivery a no-op.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommitBusy(Exception):
    """The write did not finish within the caller's timeout; the item may or may not be stored."""


class _Slot(Generic[Item, Result]):
    __slots__ = ("error", "item", "lead", "ready", "result")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.ready = threading.Event()
        self.lead = False
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """Writes items submitted by concurrent threads in batches with ``write(items) -> results``
    (one result per item, in order), called by one of the submitting threads at a time."""

    def __init__(
        self,
        write: Callable[[Sequence[Item]], Sequence[Result]],
        *,
        after_write: Callable[[Sequence[Result]], None] | None = None,
        max_batch: int = 100,
        timeout: float = 10.0,
    ) -> None:
        if max_batch < 1 or timeout <= 0:
            raise ValueError("max_batch must be at least 1 and timeout positive")
        self._write = write
        self._after_write = after_write
        self._max_batch = max_batch
        self._timeout = timeout
        self._lock = threading.Lock()
        self._queue: deque[_Slot[Item, Result]] = deque()
        # Invariant (under the lock): while no write is in progress the queue is empty.
        self._writing = False

    def submit(self, item: Item) -> Result:
        """Write ``item`` (in a batch with others') and return its result, or raise the write's
        exception; :class:`GroupCommitBusy` after ``timeout`` seconds without an outcome."""
        slot: _Slot[Item, Result] = _Slot(item)
        with self._lock:
            self._queue.append(slot)
            slot.lead = not self._writing
            self._writing = True
        if not slot.lead and not slot.ready.wait(self._timeout):
            with self._lock:
                if not slot.ready.is_set():
                    if slot in self._queue:
                        self._queue.remove(slot)  # never taken into a batch: nothing written
                    raise GroupCommitBusy(f"no outcome after {self._timeout:g} s")
        if slot.lead:
            self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]  # set by the write for this slot

    def _lead(self) -> None:
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
        items = [slot.item for slot in batch]
        results: Sequence[Result] = ()
        try:
            results = self._write(items)
            if len(results) != len(batch):
                raise RuntimeError(f"write returned {len(results)} results for {len(batch)} items")
            for slot, result in zip(batch, results, strict=True):
                slot.result = result
        except BaseException as exc:
            results = ()
            for slot in batch:
                slot.error = exc
        with self._lock:
            for slot in batch:
                slot.ready.set()
            if self._queue:
                successor = self._queue[0]
                successor.lead = True
                successor.ready.set()
            else:
                self._writing = False
        if results and self._after_write is not None:
            # Its failure is the leader's own; the batch was written and its callers answered.
            self._after_write(results)
