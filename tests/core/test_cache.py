"""The Redis cache reuses its client: building one per call cost as much as the round trip."""

from __future__ import annotations

import pytest
from django.core.cache import cache

pytestmark = pytest.mark.redis


def test_the_redis_cache_reuses_one_client_per_pool():
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    assert cache._cache.get_client(write=True) is client  # type: ignore[attr-defined]
    cache.set("reuse-probe", 1, 10)
    assert cache.get("reuse-probe") == 1
    cache.delete("reuse-probe")


def test_cache_entries_and_a_script_come_in_one_round_trip_even_on_a_redis_new_to_the_script():
    import hashlib
    import secrets

    from tollgate.core.cache import Script

    # A script no Redis has seen: the first run is sent whole, the next by its digest.
    text = f"-- {secrets.token_hex(8)}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])"
    counter = f"{cache.key_prefix}:script-probe"
    script = Script(
        text=text,
        sha=hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest(),
        keys=[counter],
        args=[2],
    )
    cache.set("script-probe-value", {"a": 1}, 10)
    found, result = cache.get_many_and_eval(["script-probe-value", "absent"], script)
    assert (found, result) == ({"script-probe-value": {"a": 1}}, 2)
    assert cache.get_many_and_eval([], script)[1] == 4
    cache._cache.get_client(write=True).delete(counter)  # type: ignore[attr-defined]
