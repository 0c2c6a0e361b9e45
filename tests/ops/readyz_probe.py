"""Run in a fresh interpreter by test_health.py: start Tollgate with the configuration in the
environment (a database that cannot be reached) and print what /readyz answers, as JSON."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tollgate.config.settings")
    import django

    django.setup()
    from django.test import Client

    from tollgate.ops import health

    # Every deadline /readyz ran its checks under: the test asserts on those, not on the wall
    # clock, which a loaded machine stretches (imports and the first request's set-up included).
    deadlines: list[float] = []
    readiness = health.readiness

    def recording_readiness(checks: Any, *, timeout: float = health.CHECK_TIMEOUT_SECONDS) -> Any:
        deadlines.append(timeout)
        return readiness(checks, timeout=timeout)

    health.readiness = recording_readiness  # type: ignore[assignment]
    started = time.monotonic()
    response = Client().get("/readyz")
    elapsed = time.monotonic() - started
    answer = {
        "status": response.status_code,
        "body": response.json(),
        "seconds": elapsed,
        "deadlines": deadlines,
    }
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
