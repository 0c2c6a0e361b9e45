from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from django.core.cache import cache

from tollgate.catalog import selectors
from tollgate.catalog.services import catalog_load
from tollgate.core.memo import per_request, request_begin, request_end
from tollgate.web.templatetags.tollgate import label


class CountingCache:
    """The shared cache, counting the keys read through it."""

    def __init__(self) -> None:
        self.reads: Counter[str] = Counter()

    def get(self, key: str, default: Any = None) -> Any:
        self.reads[key] += 1
        return cache.get(key, default)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        self.reads.update(keys)
        return cache.get_many(keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(cache, name)


def test_outside_a_request_nothing_is_kept():
    calls = []
    assert per_request("k", lambda: calls.append(1) or len(calls)) == 1
    assert per_request("k", lambda: calls.append(1) or len(calls)) == 2


def test_inside_a_request_a_value_is_computed_once_and_forgotten_at_its_end():
    calls = []
    request_begin()
    try:
        assert per_request("k", lambda: calls.append(1) or len(calls)) == 1
        assert per_request("k", lambda: calls.append(1) or len(calls)) == 1
        assert per_request("other", lambda: "x") == "x"
    finally:
        request_end()
    request_begin()
    try:
        assert per_request("k", lambda: calls.append(1) or len(calls)) == 2
    finally:
        request_end()


@pytest.mark.django_db
def test_a_page_reads_the_catalog_names_from_the_shared_cache_once(client, make_user, monkeypatch):
    catalog_load(document=_catalog())
    client.force_login(make_user())  # a signed-in account's plan cards are rendered for it
    client.get("/pricing/")  # warm
    counting = CountingCache()
    monkeypatch.setattr(selectors, "cache", counting)
    page = client.get("/pricing/").content.decode()
    assert "Projects: 10<" in page  # every plan's limits, named
    assert "Projects: 100<" in page
    assert counting.reads[selectors.NAMES_CACHE_KEY] == 1
    assert label("projects") == "Projects"  # outside a request: read again, nothing kept
    assert counting.reads[selectors.NAMES_CACHE_KEY] == 2


def _catalog() -> dict[str, Any]:
    def plan(code: str, order: int, projects: int) -> dict[str, Any]:
        return {
            "code": code,
            "name": code.title(),
            "display_order": order,
            "limits": {"projects": projects},
            "features": {"sso": order > 1},
            "prices": [{"amount": 1000 * order, "currency": "USD", "interval": "month"}],
        }

    return {
        "metrics": [{"code": "projects", "name": "Projects"}],
        "features": [{"code": "sso", "name": "SSO"}],
        "products": [
            {"code": "app", "name": "App", "plans": [plan("small", 1, 10), plan("big", 2, 100)]}
        ],
    }
