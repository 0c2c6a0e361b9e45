"""The one source of "now". Tests move time with :func:`frozen`; code never calls datetime.now()."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from contextvars import ContextVar

# Per thread (and per asyncio task): a test's threads each freeze their own clock, and one leaving
# its block can never unfreeze, or re-freeze, another's.
_frozen: ContextVar[dt.datetime | None] = ContextVar("clock_frozen", default=None)


def now() -> dt.datetime:
    """The current aware UTC time (or the frozen time inside :func:`frozen`)."""
    frozen_at = _frozen.get()
    if frozen_at is not None:
        return frozen_at
    return dt.datetime.now(tz=dt.UTC)


@contextlib.contextmanager
def frozen(at: dt.datetime) -> Iterator[None]:
    """Freeze :func:`now` at ``at`` (aware) for the duration of the block, in this thread (threads
    started inside it with a copy of this context, as ``contextvars.copy_context`` gives, too)."""
    if at.tzinfo is None:
        raise ValueError("frozen() needs an aware datetime")
    token = _frozen.set(at.astimezone(dt.UTC))
    try:
        yield
    finally:
        _frozen.reset(token)
