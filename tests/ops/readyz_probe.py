"""Run in a fresh interpreter by test_health.py: start Tollgate with the configuration in the
environment (a database that cannot be reached) and print what /readyz answers, as JSON."""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tollgate.config.settings")
    import django

    django.setup()
    from django.test import Client

    started = time.monotonic()
    response = Client().get("/readyz")
    elapsed = time.monotonic() - started
    sys.stdout.write(
        json.dumps({"status": response.status_code, "body": response.json(), "seconds": elapsed})
        + "\n"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
