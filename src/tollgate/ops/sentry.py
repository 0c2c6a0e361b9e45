"""Error reporting to Sentry, with personal data off and every event scrubbed before it leaves."""

from __future__ import annotations

from typing import Any

import sentry_sdk
from sentry_sdk.integrations.django import DjangoIntegration

from tollgate import __version__
from tollgate.core.redaction import scrub


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Redact sensitive keys anywhere in the event and mask emails, cards and keys in its text."""
    return scrub(event)  # type: ignore[no-any-return]


def init_sentry(*, dsn: str, environment: str, traces_sample_rate: float) -> None:
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=f"tollgate@{__version__}",
        integrations=[DjangoIntegration()],
        send_default_pii=False,
        traces_sample_rate=traces_sample_rate,
        before_send=scrub_event,  # type: ignore[arg-type]
        before_send_transaction=scrub_event,  # type: ignore[arg-type]
        max_request_body_size="never",
    )
