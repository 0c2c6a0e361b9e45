"""Loaded by pytest before Django's settings (``-p tests.environment`` in pyproject.toml): the suite
always runs with the test profile (immediate tasks, fast password hashing), however it is started."""

from __future__ import annotations

import os

os.environ.setdefault("TOLLGATE_ENV", "test")
