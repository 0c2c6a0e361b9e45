"""Django's Redis cache, with one Redis client per connection pool instead of one per call.

Django's ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` object for every cache
operation; with redis-py 7 that costs about as much CPU as the round trip itself, on every cache
read of every request. A ``redis.Redis`` is safe to share between threads (each command takes a
connection from the pool), so one per pool does the same work.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient
from redis.exceptions import NoScriptError


class RedisCacheClient(DjangoRedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}
        self._clients_lock = threading.Lock()

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # Django's own (untyped) helpers: which pool serves this call, and the client class.
        django_client: Any = self
        index = django_client._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            with self._clients_lock:
                client = self._clients.get(index)
                if client is None:
                    pool = django_client._get_connection_pool(write)
                    client = self._clients[index] = django_client._client(connection_pool=pool)
        return client

    def get_many_and_eval(self, keys: list[str], script: Script) -> tuple[dict[str, Any], Any]:
        """MGET ``keys`` and EVALSHA ``script`` in one pipeline (the script on the primary). A
        script this Redis has not seen yet (a restart) is sent whole once, as EVAL."""
        client = self.get_client(write=True)
        pipeline = client.pipeline(transaction=False)
        pipeline.evalsha(script.sha, len(script.keys), *script.keys, *script.args)
        if keys:
            pipeline.mget(keys)
        evaluated, *rest = pipeline.execute(raise_on_error=False)
        values = rest[0] if rest else []
        if isinstance(evaluated, NoScriptError):
            evaluated = client.eval(script.text, len(script.keys), *script.keys, *script.args)
        for outcome in (evaluated, values):
            if isinstance(outcome, Exception):
                raise outcome
        loads = self._serializer.loads  # type: ignore[attr-defined]
        found = {
            key: loads(value) for key, value in zip(keys, values, strict=True) if value is not None
        }
        return found, evaluated


class Script:
    """A Lua script and what one run of it takes, for :meth:`RedisCache.get_many_and_eval`."""

    def __init__(self, *, text: str, sha: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        self.text, self.sha, self.keys, self.args = text, sha, list(keys), list(args)


class RedisCache(DjangoRedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient

    def get_many_and_eval(
        self, keys: Iterable[str], script: Script, version: int | None = None
    ) -> tuple[dict[str, Any], Any]:
        """``get_many(keys)`` and the result of ``script`` (its keys are Redis' own, not the
        cache's), in one round trip."""
        key_map = {self.make_and_validate_key(key, version=version): key for key in keys}
        django_cache: Any = self  # Django's client, an untyped cached property
        client: RedisCacheClient = django_cache._cache
        found, evaluated = client.get_many_and_eval(list(key_map), script)
        return {key_map[key]: value for key, value in found.items()}, evaluated
