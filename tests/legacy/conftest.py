"""Legacy import test data: the demo catalog, a fixed "now" the sample sets were written for, and
the sample sets under tests/fixtures/legacy/."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from tollgate.core import clock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
VALID = FIXTURES / "valid"
INVALID = FIXTURES / "invalid"
# The sample sets' live subscriptions are current at this moment.
NOW = dt.datetime(2026, 1, 12, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _frozen_now() -> Iterator[None]:
    with clock.frozen(NOW):
        yield


@pytest.fixture
def catalog(db: Any) -> None:
    call_command("catalog_load", "demo", stdout=io.StringIO())
