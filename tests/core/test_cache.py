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
