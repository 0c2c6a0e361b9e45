"""What a request reads again and again from the shared cache, read once per request.

A value cached for every process (the catalog's names, the plans for sale) costs a round trip to
the shared cache and an unpickling on each use: a page showing ten limits read the names ten
times. :func:`per_request` keeps the first answer for the rest of the request. Every request starts
with an empty memo (Django's ``request_started``), so what another process changes shows from the
next request on, as before; outside a request (tasks, commands) nothing is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

Value = TypeVar("Value")

_memo: ContextVar[dict[str, Any] | None] = ContextVar("tollgate_request_memo", default=None)


def per_request(key: str, compute: Callable[[], Value]) -> Value:
    """``compute()``, called at most once per request for ``key`` (every time outside one)."""
    memo = _memo.get()
    if memo is None:
        return compute()
    if key in memo:
        return memo[key]
    value = memo[key] = compute()
    return value


def request_begin(**kwargs: Any) -> None:
    _memo.set({})


def request_end(**kwargs: Any) -> None:
    _memo.set(None)
