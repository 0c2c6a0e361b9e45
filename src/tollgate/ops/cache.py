"""Cache backends that count hits, misses and errors, for the metrics.

Configured in settings in place of Django's (and core's Redis) backends. Reads are counted by the
key's owner, read from its prefix (``billing:entitlements:...`` -> ``entitlements``), so the number
of series stays small whatever the keys are. Redis errors are counted by operation and raised as
before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.filebased import FileBasedCache as DjangoFileBasedCache
from django.core.cache.backends.locmem import LocMemCache as DjangoLocMemCache

from tollgate.core.cache import RedisCache as CoreRedisCache
from tollgate.core.cache import Script
from tollgate.ops import metrics

# Longest prefix first; anything else is "other".
CACHE_NAMES: tuple[tuple[str, str], ...] = (
    ("billing:entitlements", "entitlements"),
    ("catalog:", "catalog"),
    ("integrations:usage", "usage"),
    ("integrations:", "integrations"),
    ("django.contrib.sessions", "sessions"),
    ("web:", "pages"),
)
_MISSING = object()
_T = TypeVar("_T")


def cache_name(key: str) -> str:
    """The cache a key belongs to, by its prefix: ``entitlements``, ``catalog``, ... or ``other``."""
    for prefix, name in CACHE_NAMES:
        if key.startswith(prefix):
            return name
    return "other"


def _count(key: Any, found: bool) -> None:
    name = cache_name(key) if isinstance(key, str) else "other"
    (metrics.CACHE_HITS if found else metrics.CACHE_MISSES).labels(cache=name).inc()


class CountingCacheMixin:
    """Counts every ``get`` as a hit or a miss (Django's default ``get_many`` calls ``get``)."""

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        value = super().get(key, _MISSING, version=version)  # type: ignore[misc]
        _count(key, value is not _MISSING)
        return default if value is _MISSING else value


class LocMemCache(CountingCacheMixin, DjangoLocMemCache):
    pass


class FileBasedCache(CountingCacheMixin, DjangoFileBasedCache):
    pass


def _counting_errors(op: str, call: Callable[[], _T]) -> _T:
    try:
        return call()
    except Exception:
        metrics.CACHE_ERRORS.labels(op=op).inc()
        raise


class RedisCache(CountingCacheMixin, CoreRedisCache):
    """Core's Redis cache, counted; an error (Redis down, a timeout) is counted and raised."""

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return _counting_errors("get", lambda: super(RedisCache, self).get(key, default, version))

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """One round trip for all keys (Django's Redis ``get_many``); each key counted."""
        keys = list(keys)
        found = _counting_errors(
            "get_many", lambda: super(RedisCache, self).get_many(keys, version)
        )
        for key in keys:
            _count(key, key in found)
        return found

    def get_many_and_eval(
        self, keys: Iterable[str], script: Script, version: int | None = None
    ) -> tuple[dict[str, Any], Any]:
        """Core's ``get_many_and_eval``; each key counted as ``get_many`` counts it."""
        keys = list(keys)
        found, evaluated = _counting_errors(
            "get_many", lambda: super(RedisCache, self).get_many_and_eval(keys, script, version)
        )
        for key in keys:
            _count(key, key in found)
        return found, evaluated

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        _counting_errors("set", lambda: super(RedisCache, self).set(key, value, timeout, version))

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        return _counting_errors(
            "add", lambda: super(RedisCache, self).add(key, value, timeout, version)
        )

    def delete(self, key: Any, version: Any = None) -> bool:
        return _counting_errors("delete", lambda: super(RedisCache, self).delete(key, version))

    def set_many(self, data: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> list[Any]:
        return _counting_errors(
            "set_many", lambda: super(RedisCache, self).set_many(data, timeout, version)
        )

    def delete_many(self, keys: Any, version: Any = None) -> None:
        _counting_errors("delete_many", lambda: super(RedisCache, self).delete_many(keys, version))

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        return _counting_errors("incr", lambda: super(RedisCache, self).incr(key, delta, version))
