"""Email delivery metrics (exposed on /metrics with the others, see tollgate.ops.metrics)."""

from __future__ import annotations

from prometheus_client import Counter

# Labelled by the email's template: a closed set, named in the code.
EMAILS_SUPPRESSED = Counter(
    "tollgate_emails_suppressed_total",
    "Emails not sent because their address was reported undeliverable",
    ["template"],
)
