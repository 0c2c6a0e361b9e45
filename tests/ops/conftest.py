from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings

from tollgate.ops.logging import configure_logging, structured_formatter


@dataclass
class CapturedLogs:
    """What Tollgate's log handler would have written, in both formats, while the fixture was active."""

    json_stream: io.StringIO = field(default_factory=io.StringIO)
    console_stream: io.StringIO = field(default_factory=io.StringIO)

    @property
    def text(self) -> str:
        return self.json_stream.getvalue() + self.console_stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.json_stream.getvalue().splitlines() if line]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [record for record in self.records() if record.get("event") == name]


@pytest.fixture
def captured_logs() -> Iterator[CapturedLogs]:
    """Logging configured as with ``LOG_LEVEL=DEBUG`` (the most that Tollgate ever writes), plus
    handlers with the project's own formatter in both renderings on the root logger, so a test sees
    all log output there is."""
    captured = CapturedLogs()
    configure_logging(level="DEBUG", fmt=settings.LOG_FORMAT)
    root = logging.getLogger()
    handlers = []
    for stream, fmt in ((captured.json_stream, "json"), (captured.console_stream, "console")):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(structured_formatter(fmt))
        handlers.append(handler)
        root.addHandler(handler)
    try:
        yield captured
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        configure_logging(level=settings.LOG_LEVEL, fmt=settings.LOG_FORMAT)
