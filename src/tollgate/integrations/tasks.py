"""Background entry points for integrations (thin: the logic is in the services)."""

from __future__ import annotations

import datetime as dt

from huey.contrib.djhuey import db_task

from tollgate.integrations import keys


@db_task()
def api_key_touch_task(key_pk: int, at: str) -> None:
    """Record when an API key was last used (see ``keys._touch``)."""
    keys.api_key_touch(key_pk=key_pk, at=dt.datetime.fromisoformat(at))
